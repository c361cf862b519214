"""PostgreSQL: claims and finishes that wait for a busy connection run merged into one statement (``queue.merges``).

Each test first occupies every connection of the queue's merging writer with a slow statement, so the claims or
finishes started meanwhile queue up and run together; it then checks they did exactly what the same writes one
after another would have done.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
from sqlalchemy import select

from tests.integration.conftest import Database, _clean
from visionatrix.db.postgres_writer import PostgresWriter
from visionatrix.db.tables import Task
from visionatrix.errors import LeaseLost
from visionatrix.queue.driver import MERGING_CONNECTIONS
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.models import TaskStatus

T = Task.__table__.c
GRAPH = {"1": {"class_type": "Noop", "inputs": {}}}
VOLATILE = {"id", "lease_token", "lease_expires_at", "created_at", "started_at", "finished_at", "updated_at",
            "worker_id", "params", "priority"}


@pytest.fixture
async def queue(postgresql_database: Database) -> AsyncIterator[TaskQueue]:
    await _clean(postgresql_database)
    engine = postgresql_database.engine()
    queue = TaskQueue(engine, lease_s=30.0)
    try:
        yield queue
    finally:
        await queue.aclose()
        await engine.dispose()


def _writer(queue: TaskQueue) -> PostgresWriter:
    assert queue.driver is not None and isinstance(queue.driver.writer, PostgresWriter)
    return queue.driver.writer


async def _while_busy(queue: TaskQueue, *writes: Awaitable[Any]) -> list[Any]:
    """Run ``writes`` while every merging connection runs a 0.5 s statement, so they queue and merge."""
    writer = _writer(queue)
    blockers = [asyncio.ensure_future(writer.execute("SELECT pg_sleep(0.5)")) for _ in range(MERGING_CONNECTIONS)]
    await asyncio.sleep(0.1)
    assert writer.held == MERGING_CONNECTIONS
    before = writer.merged
    results = await asyncio.gather(*writes, return_exceptions=True)
    await asyncio.gather(*blockers)
    assert writer.merged - before >= len(writes) - 1, "the writes did not merge"
    return results


async def _rows(queue: TaskQueue) -> dict[int, dict[str, Any]]:
    async with queue.engine.connect() as conn:
        return {row.id: row._asdict() for row in await conn.execute(select(Task.__table__))}


async def test_merged_claims_take_tasks_in_order_and_write_what_a_single_claim_writes(queue: TaskQueue) -> None:
    ids = [(await queue.create("noop", GRAPH, {"n": i}))[0] for i in range(8)]
    urgent = (await queue.create("noop", GRAPH, {"n": "urgent"}, priority=5))[0]
    single = await queue.claim_next("solo", ["noop"])  # alone: the single-claim statement
    assert single is not None and single.id == urgent

    claims = await _while_busy(queue, *(queue.claim_next(f"w{i}", ["noop", "other"]) for i in range(6)))

    assert [claim.id for claim in claims] == ids[:6]  # FIFO, handed out in the order the claims queued
    assert len({claim.lease_token for claim in claims}) == 6
    assert all(claim.attempt == 1 and claim.graph == GRAPH and claim.flow == "noop" for claim in claims)
    assert [claim.params for claim in claims] == [{"n": i} for i in range(6)]
    rows = await _rows(queue)
    reference = {k: v for k, v in rows[urgent].items() if k not in VOLATILE}
    for i, claim in enumerate(claims):
        row = rows[claim.id]
        assert {k: v for k, v in row.items() if k not in VOLATILE} == reference
        assert (row["worker_id"], row["lease_token"]) == (f"w{i}", claim.lease_token)
        assert row["started_at"] is None and row["lease_expires_at"] > row["updated_at"]  # claimed, not started
        assert (await queue.extend_lease(claim.id, claim.lease_token)).cancel_requested is False
    assert {rows[i]["status"] for i in ids[6:]} == {"pending"}


async def test_merged_claims_prefer_the_affinity_flow_and_more_claims_than_tasks_get_none(queue: TaskQueue) -> None:
    first_a = (await queue.create("a", GRAPH, {}))[0]
    b_tasks = [(await queue.create("b", GRAPH, {}))[0] for _ in range(2)]

    claims = await _while_busy(queue, *(queue.claim_next(f"w{i}", ["a", "b"], last_flow="b") for i in range(5)))

    assert [claim.id if claim is not None else None for claim in claims] == [*b_tasks, first_a, None, None]


async def test_merged_finishes_are_each_guarded_by_their_own_lease(queue: TaskQueue) -> None:
    for _ in range(5):
        await queue.create("noop", GRAPH, {})
    claims = [await queue.claim_next("w", ["noop"]) for _ in range(5)]
    assert all(claim is not None for claim in claims)
    stale = claims[2]
    assert stale is not None

    outcomes = await _while_busy(queue, *(
        queue.mark_finished(claim.id, "not-the-token" if claim is stale else claim.lease_token,
                            timings={"run": float(i)}, peak_vram_bytes=2**40 + i if i % 2 else None)
        for i, claim in enumerate(claims) if claim is not None))

    assert [type(outcome) for outcome in outcomes] == [type(None)] * 2 + [LeaseLost] + [type(None)] * 2
    tasks = [await queue.get(claim.id) for claim in claims if claim is not None]
    assert [task.status for task in tasks] == [TaskStatus.FINISHED] * 2 + [TaskStatus.CLAIMED] + [
        TaskStatus.FINISHED] * 2
    assert [task.timings for task in tasks if task.status is TaskStatus.FINISHED] == [
        {"run": 0.0}, {"run": 1.0}, {"run": 3.0}, {"run": 4.0}]
    assert [task.peak_vram_bytes for task in tasks] == [None, 2**40 + 1, None, 2**40 + 3, None]
    assert all(task.progress == 100.0 and task.finished_at is not None for task in tasks
               if task.status is TaskStatus.FINISHED)
    rows = await _rows(queue)
    assert {rows[task.id]["lease_token"] for task in tasks if task.status is TaskStatus.FINISHED} == {None}
