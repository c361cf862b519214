"""How one write runs on each database: the connection to use, and how the changed rows come back.

- PostgreSQL: single statements in autocommit (no BEGIN/COMMIT round trips); ``RETURNING``.
- SQLite: a transaction, which the driver opens inside the statement's own call (cheaper through aiosqlite's
  thread than switching the connection to autocommit and back); ``RETURNING``.
- MySQL/MariaDB: a transaction; no ``UPDATE ... RETURNING``, so the changed row is read back while it is still
  locked (several rows: locked with ``SELECT ... FOR UPDATE`` first).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import Insert, Update

from visionatrix.queue import lease
from visionatrix.queue.claim import TASKS
from visionatrix.queue.records import AnyRow

T = TASKS.c


class Writes:
    """The write mechanics for ``engine``'s database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.backend = engine.dialect.name
        self.is_mysql = self.backend in ("mysql", "mariadb")
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    @asynccontextmanager
    async def single(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one write statement (and, on MySQL/MariaDB, reading its row back)."""
        if self.backend == "postgresql":
            async with self._autocommit.connect() as conn:
                yield conn
        else:
            async with self.engine.begin() as conn:
                yield conn

    async def update_one(self, conn: AsyncConnection, task_id: int, stmt: Update, columns: tuple[Any, ...],
                         values: dict[str, Any] | None = None) -> AnyRow | None:
        """Run ``stmt`` (which matches at most the task ``task_id``); ``columns`` of the changed row, or None.

        A statement given with ``values`` is one of the prebuilt ones (``lease``), whose RETURNING form is built once;
        one without carries its values inline and is used once.
        """
        if not self.is_mysql:
            returning = lease.returning(stmt, columns) if values is not None else stmt.returning(*columns)
            return (await conn.execute(returning, values)).first()
        if (await conn.execute(stmt, values)).rowcount == 0:
            return None
        return (await conn.execute(select(*columns).where(T.id == task_id))).first()

    async def update_many(self, conn: AsyncConnection, stmt: Update, columns: Sequence[Any]) -> list[AnyRow]:
        """Run ``stmt``; ``id`` and ``columns`` of every task it changed."""
        if not self.is_mysql:
            return list((await conn.execute(stmt.returning(T.id, *columns))).all())
        assert stmt.whereclause is not None
        rows = list((await conn.execute(select(T.id, *columns).where(stmt.whereclause).with_for_update())).all())
        if rows:
            await conn.execute(stmt.where(T.id.in_([row.id for row in rows])))
        return rows

    def upsert(self, table: Table, values: dict[str, Any], key: str) -> Insert:
        """``INSERT`` of ``values`` that replaces the other columns of the row with the same ``key``."""
        changes = {name: value for name, value in values.items() if name != key}
        if self.is_mysql:
            return mysql.insert(table).values(values).on_duplicate_key_update(changes)
        dialect_insert = postgresql.insert if self.backend == "postgresql" else sqlite.insert
        return dialect_insert(table).values(values).on_conflict_do_update(index_elements=[table.c[key]],
                                                                          set_=changes)
