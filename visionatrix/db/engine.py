"""``create_engine(url)``: an async engine tuned for the queue on SQLite, PostgreSQL or MySQL/MariaDB."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

DEFAULT_DATABASE_URI = "sqlite+aiosqlite:///./visionatrix.db"
SQLITE_BUSY_TIMEOUT_S = 30.0
SUPPORTED_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg", "mysql+asyncmy", "mariadb+asyncmy", "mysql+aiomysql",
                     "mariadb+aiomysql")


def create_engine(url: str = DEFAULT_DATABASE_URI, **kwargs: Any) -> AsyncEngine:
    """An engine for ``url``; ``kwargs`` go to SQLAlchemy's ``create_async_engine`` and win over ours.

    - SQLite (``sqlite+aiosqlite``): WAL journal, ``synchronous=NORMAL`` (a commit survives a crash of the process;
      the last ones may be lost on power loss), busy timeout 30 s, foreign keys on.
    - PostgreSQL (``postgresql+asyncpg``): READ COMMITTED (the server's default); asyncpg's statement cache.
    - MySQL 8 / MariaDB 10.6+ (``mysql+asyncmy``): READ COMMITTED, so ``SKIP LOCKED`` claims take no gap locks;
      utf8mb4; connections checked before use and recycled hourly (servers drop idle ones).
    """
    parsed = make_url(url)
    if parsed.drivername not in SUPPORTED_DRIVERS:
        raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}: use one of "
                         f"{', '.join(SUPPORTED_DRIVERS)}")
    backend = parsed.get_backend_name()
    options: dict[str, Any] = {}
    if backend == "sqlite":
        # No rollback when a connection goes back to the pool: SQLAlchemy's Connection already ended its
        # transaction, and through aiosqlite each extra call is a round trip to the driver's thread.
        options.update(connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S}, pool_reset_on_return=None)
    elif backend == "postgresql":
        options["connect_args"] = {"server_settings": {"application_name": "visionatrix"}}
    else:
        if "charset" not in parsed.query:
            parsed = parsed.update_query_dict({"charset": "utf8mb4"})
        options.update(isolation_level="READ COMMITTED", pool_pre_ping=True, pool_recycle=3600)
    options.update(kwargs)
    engine = create_async_engine(parsed, **options)
    if backend == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # the busy timeout first: switching a new database to WAL waits for a lock another process may hold
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()
