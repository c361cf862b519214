"""The two hottest statements (the claim and a finish without outputs) run on the driver connection itself.

SQLAlchemy still builds and compiles each statement (once per engine), checks the connection out of its pool and
takes it back; only the execution skips its async layer (greenlet switches, an execution context per statement),
which costs more CPU than the statement itself:

- PostgreSQL (asyncpg): one ``fetch`` in autocommit, asyncpg's per-connection cache keeps it prepared.
- SQLite (aiosqlite): the statement, reading its rows and the COMMIT as ONE call into the driver's thread (through
  aiosqlite's ``_execute``) instead of five.

The parameters and the returned columns go through the same type processing as SQLAlchemy's own execution (the
tz-aware ``UTCDateTime``, JSON). On any error the connection is invalidated, so the pool never keeps one in an
unknown state.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Update

BACKENDS = ("postgresql", "sqlite")
"""The databases whose driver connections are used directly (MySQL/MariaDB go through SQLAlchemy)."""


class DriverStatement(NamedTuple):
    """A statement compiled for one dialect: its SQL, and per positional parameter its name, constant value (for
    the values written into the statement) and bind processor; per returned column its result processor."""

    sql: str
    binds: tuple[tuple[str, Any, Callable[[Any], Any] | None], ...]
    results: tuple[Callable[[Any], Any] | None, ...]

    def args(self, values: dict[str, Any]) -> list[Any]:
        out = []
        for name, constant, process in self.binds:
            value = values.get(name, constant)
            out.append(process(value) if process is not None else value)
        return out

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(process(value) if process is not None else value
                     for process, value in zip(self.results, raw, strict=True))


def compile_statement(stmt: Update, columns: Sequence[ColumnElement[Any]], dialect: Dialect) -> DriverStatement:
    """``stmt`` (with ``RETURNING columns``) compiled for ``dialect``; its parameters are positional."""
    compiled = stmt.compile(dialect=dialect)
    assert compiled.positiontup is not None, "the drivers used here take positional parameters"
    binds = []
    for name in compiled.positiontup:
        bind = compiled.binds[name]
        if bind.expanding:
            raise ValueError(f"an expanding parameter cannot run on the driver: {name}")
        constant = None if bind.required else bind.effective_value
        binds.append((name, constant, bind.type.dialect_impl(dialect).bind_processor(dialect)))
    results = tuple(column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns)
    return DriverStatement(compiled.string, tuple(binds), results)


def _sqlite_write(connection: sqlite3.Connection, sql: str, args: list[Any]) -> list[Any]:
    """In aiosqlite's thread: the statement, all its rows, and the commit (a rollback when any of it fails)."""
    try:
        cursor = connection.execute(sql, args)
        try:
            rows = cursor.fetchall()
        finally:
            cursor.close()
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    return rows


class Driver:
    """Runs compiled statements on ``engine``'s driver connections (``BACKENDS`` only)."""

    def __init__(self, engine: AsyncEngine) -> None:
        if engine.dialect.name not in BACKENDS:
            raise ValueError(f"no driver path for {engine.dialect.name}")
        self.engine = engine
        self.is_postgresql = engine.dialect.name == "postgresql"
        self._compiled: dict[Any, DriverStatement] = {}

    def statement(self, key: Any, build: Callable[[], tuple[Update, Sequence[ColumnElement[Any]]]]) -> DriverStatement:
        """The statement cached under ``key``; ``build`` gives the statement and its returned columns once."""
        found = self._compiled.get(key)
        if found is None:
            stmt, columns = build()
            found = self._compiled[key] = compile_statement(stmt, columns, self.engine.dialect)
        return found

    async def write(self, statement: DriverStatement, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Run ``statement`` with ``values`` as one committed write; the rows it returned, processed."""
        args = statement.args(values)
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            try:
                if self.is_postgresql:
                    rows = await driver.fetch(statement.sql, *args)
                else:
                    rows = await driver._execute(_sqlite_write, driver._conn, statement.sql, args)
            except BaseException:
                await conn.invalidate()
                raise
        return [statement.row(row) for row in rows]
