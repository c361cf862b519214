"""Leases: heartbeats extend them, expired ones are requeued up to the attempt limit, stale workers are refused."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.conftest import Database
from visionatrix.errors import LeaseLost
from visionatrix.queue.events import TaskEvents
from visionatrix.queue.manager import WORKER_LOST, TaskQueue
from visionatrix.queue.models import TaskStatus

GRAPH = {"1": {"class_type": "Noop", "inputs": {}}}


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


async def test_an_expired_lease_is_requeued_and_then_failed_as_worker_lost(engine: AsyncEngine, events: TaskEvents):
    queue = TaskQueue(engine, lease_s=0.3, max_attempts=2, events=events)
    [task_id] = await queue.create("resize", GRAPH, {})
    first = await queue.claim_next("w1", ["resize"])
    assert first is not None and first.attempt == 1
    subscription = events.subscribe()

    assert await queue.requeue_expired() == 0  # the lease still runs
    await asyncio.sleep(0.45)
    assert await queue.requeue_expired() == 1

    task = await queue.get(task_id)
    assert (task.status, task.attempt, task.worker_id, task.progress) == (TaskStatus.PENDING, 1, None, 0.0)
    event = await anext(subscription)
    assert (event["type"], event["task_id"], event["requeued"]) == ("task_queued", task_id, True)

    second = await queue.claim_next("w2", ["resize"])
    assert second is not None and second.id == task_id and second.attempt == 2
    assert await queue.requeue_expired(now=later(5)) == 1

    task = await queue.get(task_id)
    assert task.status == TaskStatus.FAILED
    assert task.error is not None and task.error["message"] == WORKER_LOST == "worker lost"
    assert task.finished_at is not None
    assert (await anext(subscription))["type"] == "task_claimed"
    assert (await anext(subscription))["type"] == "task_failed"
    assert await queue.claim_next("w3", ["resize"]) is None


async def test_heartbeats_keep_a_lease_alive(engine: AsyncEngine):
    queue = TaskQueue(engine, lease_s=60)
    [task_id] = await queue.create("resize", GRAPH, {})
    task = await queue.claim_next("w1", ["resize"])
    assert task is not None

    assert await queue.requeue_expired(now=later(50)) == 0
    await asyncio.sleep(0.01)
    state = await queue.extend_lease(task_id, task.lease_token)
    assert state.cancel_requested is False
    # The first lease would have run out at +60 s; the heartbeat moved it past that.
    assert await queue.requeue_expired(now=task.lease_expires_at + timedelta(microseconds=5000)) == 0
    await queue.report_progress(task_id, task.lease_token, progress=10, current_node="1")
    assert await queue.requeue_expired(now=later(59)) == 0
    assert await queue.requeue_expired(now=later(61)) == 1


async def test_a_stale_worker_cannot_finish_a_task_requeued_and_claimed_by_another(queue: TaskQueue):
    [task_id] = await queue.create("resize", GRAPH, {})
    stale = await queue.claim_next("w-stale", ["resize"])
    assert stale is not None
    assert await queue.requeue_expired(now=later(3600)) == 1
    fresh = await queue.claim_next("w-fresh", ["resize"])
    assert fresh is not None and fresh.id == task_id and fresh.lease_token != stale.lease_token

    with pytest.raises(LeaseLost) as caught:
        await queue.mark_finished(task_id, stale.lease_token, timings={"1": 9.0}, outputs=[])
    assert caught.value.task_id == task_id
    for call in (queue.extend_lease(task_id, stale.lease_token),
                 queue.report_progress(task_id, stale.lease_token, progress=50, current_node="1"),
                 queue.mark_failed(task_id, stale.lease_token, node_id="1", class_type="Noop", message="late",
                                   traceback=None),
                 queue.mark_cancelled(task_id, stale.lease_token),
                 queue.release(task_id, stale.lease_token)):
        with pytest.raises(LeaseLost):
            await call

    task = await queue.get(task_id)
    assert (task.status, task.worker_id, task.attempt, task.progress, task.error) == (
        TaskStatus.CLAIMED, "w-fresh", 2, 0.0, None)
    await queue.mark_finished(task_id, fresh.lease_token, timings={"1": 1.0}, outputs=[])
    assert (await queue.get(task_id)).timings == {"1": 1.0}


async def test_a_wrong_token_or_an_unknown_task_loses_the_lease(queue: TaskQueue):
    [task_id] = await queue.create("resize", GRAPH, {})
    task = await queue.claim_next("w", ["resize"])
    assert task is not None
    with pytest.raises(LeaseLost):
        await queue.extend_lease(task_id, "0" * 32)
    with pytest.raises(LeaseLost):
        await queue.extend_lease(task_id + 1000, task.lease_token)
    assert (await queue.extend_lease(task_id, task.lease_token)).cancel_requested is False


async def test_release_returns_the_task_without_counting_the_attempt(queue: TaskQueue, events: TaskEvents):
    [task_id] = await queue.create("resize", GRAPH, {})
    task = await queue.claim_next("w1", ["resize"])
    assert task is not None
    await queue.report_progress(task_id, task.lease_token, progress=30, current_node="1")
    subscription = events.subscribe()

    await queue.release(task_id, task.lease_token)

    record = await queue.get(task_id)
    assert (record.status, record.attempt, record.worker_id, record.progress, record.current_node) == (
        TaskStatus.PENDING, 0, None, 0.0, None)
    assert (await anext(subscription))["type"] == "task_queued"
    again = await queue.claim_next("w2", ["resize"])
    assert again is not None and again.attempt == 1
    with pytest.raises(LeaseLost):
        await queue.release(task_id, task.lease_token)


async def test_requeue_takes_only_expired_running_tasks(db: Database):
    engine = db.engine()
    try:
        queue = TaskQueue(engine, lease_s=10)
        short = TaskQueue(engine, lease_s=1)
        ids = await queue.create("resize", GRAPH, {}, count=3)
        long_lease = await queue.claim_next("w1", ["resize"])
        short_lease = await short.claim_next("w2", ["resize"])
        assert long_lease is not None and short_lease is not None

        assert await queue.requeue_expired(now=later(5)) == 1

        statuses = {t.id: t.status for t in await queue.list()}
        assert statuses == {ids[0]: TaskStatus.CLAIMED, ids[1]: TaskStatus.PENDING, ids[2]: TaskStatus.PENDING}
    finally:
        await engine.dispose()
