"""PostgreSQL LISTEN/NOTIFY wake-ups for Database-FS workers; elsewhere ``TaskWakeups`` only sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.integration.conftest import Database, create_database, drop_database
from visionatrix.db import migrate
from visionatrix.db.engine import create_engine
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.wakeups import TaskWakeups

GRAPH = {"1": {"class_type": "Noop", "inputs": {}}}


async def test_postgres_create_restart_release_and_requeue_wake_a_listener(tmp_path: Path,
                                                                          postgresql_database: Database) -> None:
    database = await create_database("postgresql", tmp_path)
    engine = database.engine()
    queue = TaskQueue(engine, lease_s=30.0)
    try:
        async with TaskWakeups(engine) as wakeups:
            assert wakeups.supported
            await wakeups.wait(0.01)  # opens the listening connection (and reports "maybe" once)
            assert not await wakeups.wait(0.05), "nothing happened yet"

            async def woken_by(action) -> float:
                waiter = asyncio.create_task(wakeups.wait(5.0))
                await asyncio.sleep(0.05)
                started = time.perf_counter()
                await action()
                assert await waiter, "the listener was not woken"
                return time.perf_counter() - started

            assert await woken_by(lambda: queue.create("f", GRAPH, {})) < 1.0
            task = await queue.claim_next("w", ["f"])
            assert task is not None
            assert await woken_by(lambda: queue.release(task.id, task.lease_token)) < 1.0
            task = await queue.claim_next("w", ["f"])
            assert task is not None
            await queue.mark_failed(task.id, task.lease_token, node_id=None, class_type=None, message="x",
                                    traceback=None)
            assert await woken_by(lambda: queue.restart(task.id)) < 1.0
            task = await queue.claim_next("w", ["f"])
            assert task is not None
            assert await woken_by(lambda: queue.requeue_expired(datetime.now(UTC) + timedelta(hours=1))) < 1.0
            assert wakeups.received >= 4
    finally:
        await queue.aclose()
        await engine.dispose()
        await drop_database(database)


@contextlib.asynccontextmanager
async def _listening_queue(tmp_path: Path) -> AsyncIterator[tuple[TaskQueue, TaskWakeups]]:
    """A queue on a scratch PostgreSQL database and a ``TaskWakeups`` already listening on it."""
    database = await create_database("postgresql", tmp_path)
    engine = database.engine()
    queue = TaskQueue(engine)
    try:
        async with TaskWakeups(engine) as wakeups:
            await wakeups.wait(0.01)
            yield queue, wakeups
    finally:
        await queue.aclose()
        await engine.dispose()
        await drop_database(database)


async def test_a_burst_of_creates_sends_few_notices_after_the_commits(tmp_path: Path,
                                                                      postgresql_database: Database) -> None:
    """A NOTIFY inside each create serialised their commits; the notices now go out after the commit, coalesced per
    flow: one burst of creates, a few notices, and the listener is woken."""
    async with _listening_queue(tmp_path) as (queue, wakeups):
        assert queue.notifier is not None
        await asyncio.gather(*(queue.create("f", GRAPH, {}) for _ in range(50)))
        await queue.notifier.flush()
        assert 1 <= queue.notifier.sent < 50, queue.notifier.sent
        assert await wakeups.wait(1.0)
        await queue.create("g", GRAPH, {})
        await queue.notifier.flush()
        assert await wakeups.wait(1.0), "a later create notifies again"


async def test_a_rolled_back_create_wakes_nobody(tmp_path: Path, postgresql_database: Database) -> None:
    async with _listening_queue(tmp_path) as (queue, wakeups):
        async def refuse(_ids: list[int]) -> None:
            raise RuntimeError("no")

        with pytest.raises(RuntimeError):
            await queue.create("f", GRAPH, {}, before_commit=refuse)
        assert not await wakeups.wait(0.2)


async def test_listener_comes_back_after_its_connection_is_killed(tmp_path: Path,
                                                                  postgresql_database: Database) -> None:
    database = await create_database("postgresql", tmp_path)
    engine = database.engine()
    queue = TaskQueue(engine)
    admin = database.engine()
    try:
        async with TaskWakeups(engine) as wakeups:
            await wakeups.wait(0.01)
            async with admin.connect() as conn:
                killed = (await conn.execute(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"))).scalar()
            assert killed == 1
            assert await wakeups.wait(5.0), "the lost connection wakes the waiter (its claim looks)"
            async with asyncio.timeout(5):
                while await wakeups.wait(0.05):  # listening again (which says "maybe" once)
                    pass
            received = wakeups.received
            waiter = asyncio.create_task(wakeups.wait(5.0))
            await asyncio.sleep(0.05)
            await queue.create("f", GRAPH, {})
            assert await waiter
            assert wakeups.received > received, "woken by the notice itself, on the new connection"
    finally:
        await queue.aclose()
        await admin.dispose()
        await engine.dispose()
        await drop_database(database)


async def test_sqlite_wakes_on_another_process_commit_and_not_on_an_empty_claim(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'watched.db'}"
    server_engine, worker_engine = create_engine(url), create_engine(url)
    await migrate.upgrade(server_engine)
    server_queue, worker_queue = TaskQueue(server_engine), TaskQueue(worker_engine)
    try:
        async with TaskWakeups(worker_engine) as wakeups:
            assert wakeups.supported
            assert await wakeups.wait(0.01)  # the first call says "maybe" once
            assert await worker_queue.claim_next("w", ["f"]) is None  # a claim that finds nothing writes nothing
            assert not await wakeups.wait(0.2)
            waiter = asyncio.create_task(wakeups.wait(10))
            await asyncio.sleep(0.05)
            started = time.perf_counter()
            await server_queue.create("f", GRAPH, {})
            assert await waiter
            assert time.perf_counter() - started < 1.0
            assert await worker_queue.claim_next("w", ["f"]) is not None
    finally:
        for queue in (server_queue, worker_queue):
            await queue.aclose()
        for engine in (server_engine, worker_engine):
            await engine.dispose()


async def test_other_databases_only_sleep(db: Database) -> None:
    engine = db.engine()
    try:
        async with TaskWakeups(engine) as wakeups:
            if db.backend in ("postgresql", "sqlite"):
                assert wakeups.supported
                return
            assert not wakeups.supported
            started = time.perf_counter()
            assert not await wakeups.wait(0.05)
            assert time.perf_counter() - started >= 0.04
    finally:
        await engine.dispose()
