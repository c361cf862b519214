"""The hottest statements (the claim, a finish without outputs, a create of one task without files) skip
SQLAlchemy's execution layer.

SQLAlchemy still builds and compiles each statement (once per driver object); only the execution goes around its
async layer (greenlet switches, an execution context per statement), which costs more CPU than the statement:

- PostgreSQL (asyncpg): the driver's ``PostgresWriter`` (``visionatrix.db.postgres_writer``): one autocommit
  ``fetch`` on a connection the writer holds, in the caller's task; asyncpg's per-connection cache keeps the
  statements prepared.
- SQLite (a file): the driver's ``SQLiteWriter`` (``visionatrix.db.sqlite_writer``), which commits the writes of
  concurrent callers in groups on one thread and connection.

The parameters and the returned columns go through the same type processing as SQLAlchemy's own execution (the
tz-aware ``UTCDateTime``, JSON).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Insert, Update

from visionatrix.db.postgres_writer import Merge, PostgresWriter
from visionatrix.db.sqlite_writer import SQLiteWriter

MERGING_CONNECTIONS = 2
"""PostgreSQL: connections for claims and finishes. Few on purpose: writes that find both busy wait, and the
waiting ones run merged (``queue.merges``); on a 2-core machine 8 claimers reached about 2,700 claim+finish/s on
2 connections against about 2,000 on 4 and 1,600 on 8 (``docs/benchmarks.md``)."""
CLAIM_SESSION = {"enable_bitmapscan": "off", "enable_seqscan": "off", "plan_cache_mode": "force_generic_plan"}
"""PostgreSQL: the planner settings of the connections that claim and finish (``docs/queue.md``, "Depth").

- ``enable_bitmapscan = off``: a claim reads the first few pending tasks of each flow in the order of
  ``ix_tasks_claim_flow``. When the planner believes a flow has only a few pending tasks — no statistics on
  ``status`` yet, or statistics taken before a batch arrived — it prefers a bitmap scan of that index, which cannot
  keep its order: every pending task of the flow is fetched and sorted, on every claim (on a vacuumed, unanalyzed
  table of 100,000 pending tasks, 30 ms per merged claim instead of 0.2 ms). Without bitmap scans the cheapest plan
  left is the ordered index probe, whatever the estimates; the finishes find their rows by primary key either way.
- ``enable_seqscan = off``: a plan made while the table was tiny (a few tasks, one page) reads it whole and sorts
  it; cached, that plan went on reading the whole table once 100,000 tasks had arrived (36 ms a claim). PostgreSQL
  caches such a generic plan by itself after five executions when it looks no worse than re-planning. With
  sequential scans priced out, the claim and the finish use their indexes at any size.
- ``plan_cache_mode = force_generic_plan``: the prepared claim and finish are planned once per connection instead of
  at every execution (planning the merged claim cost as much as running it). With the two settings above their
  plans are the same index probes for any values, table size and statistics. 8 claimers: 3,164 to 3,193
  claim+finish/s against 2,410 to 2,568 without it.
"""
PLAIN_CONNECTIONS = 8
"""PostgreSQL: connections for the writes that do not merge (creates, wake-up notices)."""
BACKENDS = ("postgresql", "sqlite")
"""The databases with a driver path (MySQL/MariaDB go through SQLAlchemy; so does an in-memory SQLite database)."""


def sqlite_file(engine: AsyncEngine) -> str | None:
    """The file of a SQLite ``engine``; None for an in-memory database (or another backend)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    if url.query.get("mode") == "memory" or str(url.database).startswith("file::memory:"):
        return None
    return str(url.database)


def supports(engine: AsyncEngine) -> bool:
    """Whether ``Driver(engine)`` can be built."""
    return engine.dialect.name == "postgresql" or sqlite_file(engine) is not None


class DriverStatement(NamedTuple):
    """A statement compiled for one dialect: its SQL, and per positional parameter its name, constant value (for
    the values written into the statement) and bind processor; per returned column its result processor."""

    sql: str
    binds: tuple[tuple[str, Any, Callable[[Any], Any] | None], ...]
    results: tuple[Callable[[Any], Any] | None, ...]

    def position(self, name: str) -> int:
        """Where the parameter ``name`` is among the positional arguments."""
        return next(i for i, (bind, _, _) in enumerate(self.binds) if bind == name)

    def args(self, values: dict[str, Any]) -> list[Any]:
        out = []
        for name, constant, process in self.binds:
            value = values.get(name, constant)
            out.append(process(value) if process is not None else value)
        return out

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(process(value) if process is not None else value
                     for process, value in zip(self.results, raw, strict=True))


def compile_statement(stmt: Insert | Update, columns: Sequence[ColumnElement[Any]],
                      dialect: Dialect) -> DriverStatement:
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


class Driver:
    """Runs compiled statements on ``engine``'s driver connections (``BACKENDS`` only)."""

    def __init__(self, engine: AsyncEngine) -> None:
        if not supports(engine):
            raise ValueError(f"no driver path for {engine.url.render_as_string()}")
        self.engine = engine
        self.is_postgresql = engine.dialect.name == "postgresql"
        path = sqlite_file(engine)
        self.writer: SQLiteWriter | PostgresWriter
        """Every write on SQLite; on PostgreSQL the mergeable ones (claims, finishes), on ``MERGING_CONNECTIONS``."""
        self.plain: SQLiteWriter | PostgresWriter
        """The other writes (creates, wake-up notices): on PostgreSQL a writer of their own, so that they neither
        wait behind the merged writes nor break their merges up."""
        if path is not None:
            self.writer = self.plain = SQLiteWriter(path)
        else:
            self.writer = PostgresWriter(engine, connections=MERGING_CONNECTIONS, session=CLAIM_SESSION)
            self.plain = PostgresWriter(engine, connections=PLAIN_CONNECTIONS)
        self._compiled: dict[Any, DriverStatement] = {}

    def statement(self, key: Any,
                  build: Callable[[], tuple[Insert | Update, Sequence[ColumnElement[Any]]]]) -> DriverStatement:
        """The statement cached under ``key``; ``build`` gives the statement and its returned columns once."""
        found = self._compiled.get(key)
        if found is None:
            stmt, columns = build()
            found = self._compiled[key] = compile_statement(stmt, columns, self.engine.dialect)
        return found

    async def write(self, statement: DriverStatement, values: dict[str, Any], *,
                    merge: Merge | None = None) -> list[tuple[Any, ...]]:
        """Run ``statement`` with ``values`` as one committed write; the rows it returned, processed. ``merge``: how
        it may run together with other waiting writes on PostgreSQL (``queue.merges``)."""
        args = statement.args(values)
        if isinstance(self.writer, SQLiteWriter):
            rows = await self.writer.execute(statement.sql, args)
        elif merge is not None:
            rows = await self.writer.execute(statement.sql, args, merge=merge)
        else:
            rows = await self.plain.execute(statement.sql, args)
        return [statement.row(row) for row in rows]

    async def aclose(self) -> None:
        """Stop the SQLite writer's thread (it also ends by itself when idle); give the PostgreSQL writer's
        connections back to the pool."""
        for writer in {self.writer, self.plain}:
            if isinstance(writer, SQLiteWriter):
                await asyncio.to_thread(writer.close)
            else:
                await writer.aclose()
