"""Alembic, driven from code: ``upgrade(engine)`` brings the schema to head; no ``alembic.ini`` is needed.

The migration scripts live in ``visionatrix/db/migrations/versions``. To write a new one, change ``tables.py``,
then let Alembic draft it against a migrated database::

    python -c "import asyncio; from visionatrix.db import engine, migrate; \\
        asyncio.run(migrate.revision(engine.create_engine(), 'what changed'))"

and review the draft (autogenerate misses renames and data moves).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from visionatrix.db import tables

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
LOCK_NAME = "visionatrix_migrate"
PG_LOCK_KEY = 0x76697831  # "vix1": an arbitrary advisory-lock key for migrations


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code; ``connection`` is the one ``env.py`` migrates."""
    config = Config()
    config.set_main_option("path_separator", "os")
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate the database of ``engine`` to ``revision``. Safe when several processes start at once: they take
    a database lock in turn (an advisory lock on PostgreSQL, ``GET_LOCK`` on MySQL/MariaDB)."""
    async with engine.connect() as conn:
        await conn.run_sync(_upgrade_locked, revision)


def _upgrade_locked(connection: Connection, revision: str) -> None:
    backend = connection.dialect.name
    if backend == "sqlite":
        _upgrade_sqlite(connection, revision)
        return
    lock, unlock = {
        "postgresql": ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"),
        "mysql": ("SELECT GET_LOCK(:name, 600)", "SELECT RELEASE_LOCK(:name)"),
        "mariadb": ("SELECT GET_LOCK(:name, 600)", "SELECT RELEASE_LOCK(:name)"),
    }[backend]
    names = {"key": PG_LOCK_KEY, "name": LOCK_NAME}
    connection.execute(text(lock), names)  # a session lock: it outlives the commits below
    connection.commit()
    try:
        with connection.begin():
            command.upgrade(alembic_config(connection), revision)
    finally:
        connection.execute(text(unlock), names)
        connection.commit()


def _upgrade_sqlite(connection: Connection, revision: str) -> None:
    """One ``BEGIN IMMEDIATE`` transaction around the whole upgrade: SQLite's DDL is transactional, and the write
    lock taken first makes a second process wait, then find the schema at head."""
    connection = connection.execution_options(isolation_level="AUTOCOMMIT")
    connection.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        command.upgrade(alembic_config(connection), revision)
    except BaseException:
        connection.exec_driver_sql("ROLLBACK")
        raise
    connection.exec_driver_sql("COMMIT")


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None when it was never migrated)."""
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


def head_revision() -> str:
    """The newest revision of the migration scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def schema_diff(engine: AsyncEngine) -> list[Any]:
    """What Alembic's autogenerate finds between the database and ``tables.Base.metadata`` (empty: they agree)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_diff)


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts=context_options(connection))
    return list(compare_metadata(context, tables.Base.metadata))


async def revision(engine: AsyncEngine, message: str) -> None:
    """Draft a new migration script from the difference between the database and the tables (for developers)."""
    async with engine.connect() as conn:
        await conn.run_sync(lambda sync: command.revision(alembic_config(sync), message=message, autogenerate=True))


def context_options(connection: Connection) -> dict[str, Any]:
    """Options shared by ``env.py`` and ``schema_diff``: compare types, and use batch mode on SQLite."""
    return {
        "target_metadata": tables.Base.metadata,
        "compare_type": True,
        "render_as_batch": connection.dialect.name == "sqlite",
    }
