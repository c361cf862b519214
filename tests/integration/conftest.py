"""Real databases for the integration tier: a SQLite file, PostgreSQL and MariaDB.

Every test that takes ``db`` runs once per backend. PostgreSQL and MariaDB get a schema / database of their own,
``vix_test_<random>``, made and migrated once per session and dropped at the end (the ``test`` databases are
shared with other runs); each test starts with empty tables. A server that cannot be reached FAILS the tests with
a message naming it — these tests never skip. ``.ci/db-up`` starts the servers.

Override the servers with ``VIX_TEST_POSTGRES_URL`` and ``VIX_TEST_MARIADB_URL``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from visionatrix.db import migrate
from visionatrix.db.engine import create_engine
from visionatrix.queue.events import TaskEvents
from visionatrix.queue.manager import TaskQueue

POSTGRES_URL = os.environ.get("VIX_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("VIX_TEST_MARIADB_URL", "mysql+asyncmy://root@127.0.0.1:3306/test")
BACKENDS = ("sqlite", "postgresql", "mariadb")


@dataclass
class Database:
    """One migrated, empty database; ``engine()`` opens a new engine (its own pool) on it."""

    backend: str
    url: str
    name: str
    engine_options: dict[str, Any] = field(default_factory=dict)

    def engine(self, **options: Any) -> AsyncEngine:
        return create_engine(self.url, **{**self.engine_options, **options})


async def create_database(backend: str, tmp_path: Path, *, migrated: bool = True) -> Database:
    """A brand-new database of ``backend``: a SQLite file, a PostgreSQL schema or a MariaDB database."""
    name = f"vix_test_{secrets.token_hex(4)}"
    if backend == "sqlite":
        database = Database("sqlite", f"sqlite+aiosqlite:///{tmp_path / (name + '.db')}", name=name)
    else:
        admin_url = POSTGRES_URL if backend == "postgresql" else MARIADB_URL
        kind = "SCHEMA" if backend == "postgresql" else "DATABASE"
        await _admin(backend, admin_url, f"CREATE {kind} {name}")
        if backend == "postgresql":
            database = Database(backend, admin_url, name=name,
                                engine_options={"connect_args": {"server_settings": {"search_path": name}}})
        else:
            url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
            database = Database(backend, url, name=name)
    if migrated:
        engine = database.engine()
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()
    return database


async def drop_database(database: Database) -> None:
    if database.backend == "postgresql":
        await _admin("postgresql", POSTGRES_URL, f"DROP SCHEMA IF EXISTS {database.name} CASCADE")
    elif database.backend == "mariadb":
        await _admin("mariadb", MARIADB_URL, f"DROP DATABASE IF EXISTS {database.name}")


async def _admin(backend: str, url: str, statement: str) -> None:
    admin = create_engine(url)
    try:
        async with admin.begin() as conn:
            await conn.execute(text(statement))
    except Exception as exc:
        pytest.fail(f"{backend} at {url} refused {statement!r} ({type(exc).__name__}: {exc}). The integration "
                    f"tests need the server running: start it with .ci/db-up (make test does).", pytrace=False)
    finally:
        await admin.dispose()


@asynccontextmanager
async def scratch_database(backend: str, tmp_path: Path, *, migrated: bool = True) -> AsyncIterator[Database]:
    """``create_database`` for the length of a ``with`` block."""
    database = await create_database(backend, tmp_path, migrated=migrated)
    try:
        yield database
    finally:
        await drop_database(database)


@pytest.fixture(scope="session")
def postgresql_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    database = asyncio.run(create_database("postgresql", tmp_path_factory.mktemp("pg")))
    yield database
    asyncio.run(drop_database(database))


@pytest.fixture(scope="session")
def mariadb_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    database = asyncio.run(create_database("mariadb", tmp_path_factory.mktemp("mariadb")))
    yield database
    asyncio.run(drop_database(database))


CLEAN = ("DELETE FROM task_files", "DELETE FROM tasks", "DELETE FROM workers")


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """A migrated database with empty tables, once per backend."""
    backend = request.param
    if backend == "sqlite":
        return asyncio.run(create_database("sqlite", tmp_path))
    database: Database = request.getfixturevalue(f"{backend}_database")
    asyncio.run(_clean(database))
    return database


async def _clean(database: Database) -> None:
    engine = database.engine()
    try:
        async with engine.begin() as conn:
            for statement in CLEAN:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture
async def engine(db: Database) -> AsyncIterator[AsyncEngine]:
    engine = db.engine()
    yield engine
    await engine.dispose()


@pytest.fixture
def events() -> TaskEvents:
    return TaskEvents()


@pytest.fixture
async def queue(engine: AsyncEngine, events: TaskEvents) -> AsyncIterator[TaskQueue]:
    queue = TaskQueue(engine, lease_s=30.0, max_attempts=3, events=events)
    yield queue
    await queue.aclose()
