"""The writers behind the queue's hot writes: ``SQLiteWriter`` (group commits on one thread) and ``PostgresWriter``
(autocommit writes on a few held connections).

Each is checked on its real database: concurrent writes are all committed (on SQLite in fewer transactions than
writes; on PostgreSQL on no more connections than allowed); a bad write fails only its own caller and leaves nothing
behind; a held lock or a lost connection is waited out or reported, never swallowed; connections go back to the pool.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from tests.integration.conftest import POSTGRES_URL, Database, create_database, drop_database
from visionatrix.db.engine import create_engine
from visionatrix.db.postgres_writer import Merge, PostgresWriter
from visionatrix.db.sqlite_writer import SQLiteWriter

CREATE = "CREATE TABLE items (id INTEGER PRIMARY KEY, name VARCHAR(40) NOT NULL UNIQUE)"


# -- SQLite ---------------------------------------------------------------------------------------------------------

@pytest.fixture
def sqlite_path(tmp_path: Path) -> str:
    path = str(tmp_path / "writer.db")
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(CREATE)
    return path


def _names(path: str) -> list[str]:
    with sqlite3.connect(path) as connection:
        return [row[0] for row in connection.execute("SELECT name FROM items ORDER BY id")]


async def test_sqlite_concurrent_writes_commit_in_groups(sqlite_path: str) -> None:
    writer = SQLiteWriter(sqlite_path)
    try:
        rows = await asyncio.gather(*(writer.execute("INSERT INTO items (name) VALUES (?) RETURNING name",
                                                     [f"n{i}"]) for i in range(300)))
    finally:
        writer.close()
    assert [r[0][0] for r in rows] == [f"n{i}" for i in range(300)]
    assert sorted(_names(sqlite_path)) == sorted(f"n{i}" for i in range(300))
    assert 1 <= writer.batches < 300


async def test_sqlite_a_failing_write_fails_alone(sqlite_path: str) -> None:
    writer = SQLiteWriter(sqlite_path)
    try:
        await writer.execute("INSERT INTO items (name) VALUES ('taken')")
        outcomes = await asyncio.gather(
            writer.execute("INSERT INTO items (name) VALUES ('a')"),
            writer.execute("INSERT INTO items (name) VALUES ('taken')"),  # UNIQUE violation
            writer.execute("INSERT INTO items (name) VALUES ('b')"),
            return_exceptions=True)
    finally:
        writer.close()
    assert outcomes[0] == [] and outcomes[2] == []
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    assert _names(sqlite_path) == ["taken", "a", "b"]  # each once: the rolled-back group was not committed twice


async def test_sqlite_waits_for_another_writer_then_commits(sqlite_path: str) -> None:
    other = sqlite3.connect(sqlite_path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO items (name) VALUES ('first')")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    writer = SQLiteWriter(sqlite_path)
    try:
        release.start()
        await writer.execute("INSERT INTO items (name) VALUES ('second')")
    finally:
        release.join()
        other.close()
        writer.close()
    assert _names(sqlite_path) == ["first", "second"]


async def test_sqlite_lock_held_past_the_timeout_is_an_error(sqlite_path: str) -> None:
    other = sqlite3.connect(sqlite_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    writer = SQLiteWriter(sqlite_path, busy_timeout_s=0.2)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await writer.execute("INSERT INTO items (name) VALUES ('never')")
    finally:
        other.execute("ROLLBACK")
        other.close()
        writer.close()
    assert _names(sqlite_path) == []


async def test_sqlite_thread_ends_when_idle_and_comes_back(sqlite_path: str) -> None:
    writer = SQLiteWriter(sqlite_path, idle_s=0.05)
    try:
        await writer.execute("INSERT INTO items (name) VALUES ('one')")
        for _ in range(100):
            if writer._thread is None:
                break
            await asyncio.sleep(0.02)
        assert writer._thread is None, "the idle writer thread did not end"
        await writer.execute("INSERT INTO items (name) VALUES ('two')")
    finally:
        writer.close()
    assert _names(sqlite_path) == ["one", "two"]


async def test_sqlite_closed_writer_and_memory_database_are_refused(sqlite_path: str) -> None:
    writer = SQLiteWriter(sqlite_path)
    await writer.execute("INSERT INTO items (name) VALUES ('x')")
    writer.close()
    writer.close()  # twice is fine
    with pytest.raises(RuntimeError, match="closed"):
        await writer.execute("INSERT INTO items (name) VALUES ('y')")
    with pytest.raises(ValueError, match="in-memory"):
        SQLiteWriter(":memory:")


async def test_sqlite_unopenable_file_fails_the_write(tmp_path: Path) -> None:
    writer = SQLiteWriter(str(tmp_path / "no" / "such" / "dir" / "x.db"))
    try:
        with pytest.raises(sqlite3.OperationalError):
            await writer.execute("SELECT 1")
    finally:
        writer.close()


# -- PostgreSQL -----------------------------------------------------------------------------------------------------

@pytest.fixture
async def pg_engine(tmp_path: Path, postgresql_database: Database) -> AsyncIterator[AsyncEngine]:
    database = await create_database("postgresql", tmp_path, migrated=False)
    engine = database.engine()
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE items (id SERIAL PRIMARY KEY, name VARCHAR(40) NOT NULL UNIQUE)"))
    try:
        yield engine
    finally:
        await engine.dispose()
        await drop_database(database)


async def _connections_returned(engine: AsyncEngine) -> bool:
    """Whether the writer gave its connections back (it lets go of one ``idle_s`` after its last write)."""
    for _ in range(300):
        if engine.pool.checkedout() == 0:  # type: ignore[attr-defined]
            return True
        await asyncio.sleep(0.01)
    return False


async def _pg_names(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(text("SELECT name FROM items ORDER BY id"))).scalars())


async def test_postgres_concurrent_writes_share_at_most_the_allowed_connections(pg_engine: AsyncEngine) -> None:
    writer = PostgresWriter(pg_engine, connections=3, idle_s=0.1)
    rows = await asyncio.gather(*(writer.execute(
        "INSERT INTO items (name) VALUES ($1) RETURNING name, pg_backend_pid() AS pid", [f"n{i}"])
        for i in range(300)))
    assert [r[0]["name"] for r in rows] == [f"n{i}" for i in range(300)]
    assert sorted(await _pg_names(pg_engine)) == sorted(f"n{i}" for i in range(300))
    assert len({r[0]["pid"] for r in rows}) == 3 == writer.opened
    assert writer.statements == 300 and writer.merged == 0  # writes without a Merge never merge
    assert await _connections_returned(pg_engine)
    assert writer.held == 0


async def test_postgres_callers_beyond_the_connections_wait_their_turn(pg_engine: AsyncEngine) -> None:
    writer = PostgresWriter(pg_engine, connections=2)
    started = asyncio.get_running_loop().time()
    rows = await asyncio.gather(*(writer.execute(
        "INSERT INTO items (name) SELECT $1 FROM pg_sleep(0.05) RETURNING pg_backend_pid() AS pid", [f"n{i}"])
        for i in range(6)))
    assert len({r[0]["pid"] for r in rows}) == 2
    assert asyncio.get_running_loop().time() - started >= 0.14  # three rounds of two
    await writer.aclose()
    assert pg_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert not event.contains(pg_engine.sync_engine, "engine_disposed", writer._engine_disposed)  # let go of


async def test_postgres_a_caller_cancelled_mid_write_leaves_no_broken_connection(pg_engine: AsyncEngine) -> None:
    writer = PostgresWriter(pg_engine, connections=1)
    slow = asyncio.ensure_future(writer.execute(SLOW_INSERT))
    await asyncio.sleep(0.2)
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow
    await writer.execute("INSERT INTO items (name) VALUES ('after')")  # on a new connection, at once
    await _kill(query_prefix="INSERT INTO items (name) SELECT 'slow'")  # the server notices a lost client late
    assert await _pg_names(pg_engine) == ["after"]
    await writer.aclose()
    assert pg_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_postgres_one_caller_reuses_one_connection(pg_engine: AsyncEngine) -> None:
    writer = PostgresWriter(pg_engine)
    pids = set()
    for i in range(20):
        rows = await writer.execute("INSERT INTO items (name) VALUES ($1) RETURNING pg_backend_pid() AS pid",
                                    [f"n{i}"])
        pids.add(rows[0]["pid"])
    assert len(pids) == 1


async def test_postgres_a_failing_write_fails_alone(pg_engine: AsyncEngine) -> None:
    writer = PostgresWriter(pg_engine, connections=1)
    await writer.execute("INSERT INTO items (name) VALUES ('taken')")
    outcomes = await asyncio.gather(
        writer.execute("INSERT INTO items (name) VALUES ('a')"),
        writer.execute("INSERT INTO items (name) VALUES ('taken')"),
        writer.execute("INSERT INTO items (name) VALUES ('b')"),
        return_exceptions=True)
    assert outcomes[0] == [] and outcomes[2] == []
    assert isinstance(outcomes[1], asyncpg.UniqueViolationError)
    assert await _pg_names(pg_engine) == ["taken", "a", "b"]


async def _kill(*, query_prefix: str = "", pid: int = 0) -> int:
    """Terminate the server connections running a query that starts with ``query_prefix``, or the one ``pid``
    (from a connection of its own, never one of the writer's pool)."""
    where = "pid = :pid" if pid else "query LIKE :prefix AND pid <> pg_backend_pid()"
    admin = create_engine(POSTGRES_URL, poolclass=NullPool)
    try:
        async with admin.connect() as conn:
            return int((await conn.execute(text(
                f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE {where}"),
                {"prefix": query_prefix + "%", "pid": pid})).scalar() or 0)
    finally:
        await admin.dispose()


SLOW_INSERT = "INSERT INTO items (name) SELECT 'slow' FROM pg_sleep(30)"


async def _kill_slow_insert(slow: asyncio.Future[Any]) -> None:
    """Terminate the connection running ``SLOW_INSERT`` (once it runs) and see that write fail."""
    for _ in range(200):
        if await _kill(query_prefix="INSERT INTO items (name) SELECT 'slow'") == 1:
            break
        await asyncio.sleep(0.01)
    with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
        await asyncio.wait_for(slow, 10)


async def test_postgres_connection_killed_mid_write_fails_that_write_only(pg_engine: AsyncEngine) -> None:
    writer = PostgresWriter(pg_engine, connections=1)
    slow = asyncio.ensure_future(writer.execute(SLOW_INSERT))
    await _kill_slow_insert(slow)
    await writer.execute("INSERT INTO items (name) VALUES ('after')")
    assert await _pg_names(pg_engine) == ["after"]
    assert await _connections_returned(pg_engine)


async def test_postgres_writes_queued_behind_a_killed_write_go_on_a_new_connection(pg_engine: AsyncEngine) -> None:
    writer = PostgresWriter(pg_engine, connections=1)
    slow = asyncio.ensure_future(writer.execute(SLOW_INSERT))
    await asyncio.sleep(0.1)
    queued = asyncio.ensure_future(writer.execute("INSERT INTO items (name) VALUES ('queued')"))
    await _kill_slow_insert(slow)
    await asyncio.wait_for(queued, 10)
    assert await _pg_names(pg_engine) == ["queued"]
    assert await _connections_returned(pg_engine)


async def test_postgres_connection_closed_between_writes_is_replaced(pg_engine: AsyncEngine) -> None:
    writer = PostgresWriter(pg_engine, connections=1)
    rows = await writer.execute("INSERT INTO items (name) VALUES ('before') RETURNING pg_backend_pid() AS pid")
    assert await _connections_returned(pg_engine)
    assert await _kill(pid=rows[0]["pid"]) == 1  # the connection waiting in the pool
    await asyncio.sleep(0.1)  # asyncpg reads the server's goodbye
    await writer.execute("INSERT INTO items (name) VALUES ('after')")
    assert await _pg_names(pg_engine) == ["before", "after"]


async def test_postgres_disposing_of_the_engine_closes_the_idle_connections(pg_engine: AsyncEngine) -> None:
    writer = PostgresWriter(pg_engine, idle_s=60)
    rows = await writer.execute("SELECT pg_backend_pid() AS pid")
    assert writer.held == 1
    await pg_engine.dispose()  # without writer.aclose(): nothing is left for the garbage collector
    assert writer.held == 0
    assert await _session_ends(rows[0]["pid"])


async def _session_ends(pid: int) -> bool:
    """Whether the server's session ``pid`` ends within 2 s (a closed socket ends it a moment later)."""
    admin = create_engine(POSTGRES_URL, poolclass=NullPool)
    try:
        for _ in range(200):
            async with admin.connect() as conn:
                if not (await conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"),
                                           {"pid": pid})).scalar():
                    return True
            await asyncio.sleep(0.01)
        return False
    finally:
        await admin.dispose()


def _insert_merge(*, broken: bool = False) -> Merge:
    """Queued ``INSERT ... VALUES ($1) RETURNING name`` writes as one multi-row INSERT (``broken``: a merged
    statement the server refuses, which must make each write run alone)."""
    def build(writes: list[Sequence[Any]]) -> tuple[str, Sequence[Any]]:
        if broken:
            return "INSERT INTO no_such_table VALUES (1)", []
        return "INSERT INTO items (name) SELECT unnest($1::VARCHAR[]) RETURNING name", [[w[0] for w in writes]]

    def split(writes: list[Sequence[Any]], rows: list[Any]) -> list[list[Any]]:
        found = {row["name"]: row for row in rows}
        return [[found[w[0]]] if w[0] in found else [] for w in writes]

    return Merge(key="insert", build=build, split=split)


async def _queued_behind_a_slow_write(writer: PostgresWriter, *names: str, merge: Merge) -> list[Any]:
    slow = asyncio.ensure_future(writer.execute("SELECT pg_sleep(0.2)"))
    await asyncio.sleep(0.05)
    outcomes = await asyncio.gather(*(writer.execute("INSERT INTO items (name) VALUES ($1) RETURNING name", [name],
                                                     merge=merge) for name in names), return_exceptions=True)
    await slow
    return outcomes


async def test_postgres_queued_writes_run_merged(pg_engine: AsyncEngine) -> None:
    writer = PostgresWriter(pg_engine, connections=1)
    outcomes = await _queued_behind_a_slow_write(writer, "a", "b", "c", merge=_insert_merge())
    assert [rows[0]["name"] for rows in outcomes] == ["a", "b", "c"]
    assert writer.merged == 3 and writer.statements == 2  # the slow one, then one for all three
    assert sorted(await _pg_names(pg_engine)) == ["a", "b", "c"]


async def test_postgres_a_merged_statement_that_fails_runs_its_writes_alone(pg_engine: AsyncEngine) -> None:
    writer = PostgresWriter(pg_engine, connections=1)
    await writer.execute("INSERT INTO items (name) VALUES ('taken')")
    outcomes = await _queued_behind_a_slow_write(writer, "a", "taken", "b", merge=_insert_merge(broken=True))
    assert outcomes[0][0]["name"] == "a" and outcomes[2][0]["name"] == "b"
    assert isinstance(outcomes[1], asyncpg.UniqueViolationError)
    assert writer.merged == 0
    assert await _pg_names(pg_engine) == ["taken", "a", "b"]


async def test_postgres_a_write_cancelled_while_queued_is_never_sent(pg_engine: AsyncEngine) -> None:
    writer = PostgresWriter(pg_engine, connections=1)
    slow = asyncio.ensure_future(writer.execute("SELECT pg_sleep(0.2)"))
    await asyncio.sleep(0.05)
    queued = asyncio.ensure_future(writer.execute("INSERT INTO items (name) VALUES ('never')"))
    kept = asyncio.ensure_future(writer.execute("INSERT INTO items (name) VALUES ('kept')"))
    await asyncio.sleep(0.01)
    queued.cancel()
    await slow
    await kept
    assert queued.cancelled()
    assert await _pg_names(pg_engine) == ["kept"]
