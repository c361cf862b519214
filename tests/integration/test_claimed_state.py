"""A claimed task (leased to a worker that has not started executing it) shows ``claimed``, not ``running``; it is
timed from the worker's start report; its cancel is immediate and its worker's start is then refused. On every
database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.conftest import Database
from visionatrix.errors import LeaseLost
from visionatrix.queue.events import TaskEvents
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.models import TaskStatus

GRAPH = {"1": {"class_type": "Noop", "inputs": {}}}
WAIT_S = 0.3


def drain(subscription) -> list[dict]:
    return subscription.drain()


async def test_a_claimed_task_shows_claimed_until_its_worker_starts_it_and_is_timed_from_the_start(
        queue: TaskQueue, events: TaskEvents) -> None:
    [task_id] = await queue.create("resize", GRAPH, {})
    subscription = events.subscribe()
    claimed = await queue.claim_next("w1", ["resize"])
    assert claimed is not None
    task = await queue.get(task_id)
    assert (task.status, task.worker_id, task.started_at) == (TaskStatus.CLAIMED, "w1", None)
    [event] = drain(subscription)
    assert (event["type"], event["status"], event["worker_id"]) == ("task_claimed", "claimed", "w1")

    await asyncio.sleep(WAIT_S)  # it waits for the worker's current task
    before_start = datetime.now(UTC)
    state = await queue.mark_started(task_id, claimed.lease_token)

    assert state.cancel_requested is False
    task = await queue.get(task_id)
    assert task.status is TaskStatus.RUNNING and task.started_at is not None
    assert task.started_at >= before_start - timedelta(milliseconds=50), "the wait is not part of the run"
    [event] = drain(subscription)
    assert (event["type"], event["status"], event["worker_id"], event["attempt"]) == (
        "task_started", "running", "w1", 1)
    first_start = task.started_at
    await queue.mark_started(task_id, claimed.lease_token)  # a retried start report keeps the first start
    assert (await queue.get(task_id)).started_at == first_start

    await queue.mark_finished(task_id, claimed.lease_token, timings={"1": 0.01})
    done = await queue.get(task_id)
    assert done.finished_at is not None and done.started_at == first_start
    assert (done.finished_at - done.started_at).total_seconds() < WAIT_S


async def test_the_status_filter_tells_claimed_from_running(queue: TaskQueue) -> None:
    first, second, third = await queue.create("resize", GRAPH, {}, count=3)
    run = await queue.claim_next("w1", ["resize"])
    ahead = await queue.claim_next("w1", ["resize"])
    assert run is not None and ahead is not None and (run.id, ahead.id) == (first, second)
    await queue.mark_started(run.id, run.lease_token)

    assert [t.id for t in await queue.list(status=TaskStatus.RUNNING)] == [first]
    assert [t.id for t in await queue.list(status=TaskStatus.CLAIMED)] == [second]
    assert [t.id for t in await queue.list(status=TaskStatus.PENDING)] == [third]
    assert [t.status for t in await queue.list()] == [TaskStatus.PENDING, TaskStatus.CLAIMED, TaskStatus.RUNNING]


async def test_cancel_of_a_claimed_task_is_immediate_and_its_worker_may_not_start_it(
        queue: TaskQueue, events: TaskEvents) -> None:
    [task_id] = await queue.create("resize", GRAPH, {})
    claimed = await queue.claim_next("w1", ["resize"])
    assert claimed is not None
    subscription = events.subscribe()

    task = await queue.cancel(task_id)

    assert task.status is TaskStatus.CANCELLED and task.finished_at is not None and task.started_at is None
    assert [(e["type"], e["status"]) for e in drain(subscription)] == [("task_cancelled", "cancelled")]
    for call in (queue.mark_started(task_id, claimed.lease_token), queue.extend_lease(task_id, claimed.lease_token),
                 queue.report_progress(task_id, claimed.lease_token, progress=10, current_node="1")):
        with pytest.raises(LeaseLost):
            await call
    assert (await queue.get(task_id)).status is TaskStatus.CANCELLED
    assert await queue.claim_next("w2", ["resize"]) is None
    assert (await queue.restart(task_id)).status is TaskStatus.PENDING


async def test_a_cancel_racing_the_start_either_stops_the_task_unrun_or_flags_its_run(db: Database) -> None:
    """Cancel and start on two engines at once, many times: exactly one of them wins each time."""
    engines: list[AsyncEngine] = [db.engine(), db.engine()]
    user, worker = TaskQueue(engines[0]), TaskQueue(engines[1])
    outcomes = set()
    try:
        ids = await user.create("resize", GRAPH, {}, count=12)
        for task_id in ids:
            claimed = await worker.claim_next("w1", ["resize"])
            assert claimed is not None and claimed.id == task_id
            cancelled, started = await asyncio.gather(user.cancel(task_id),
                                                      worker.mark_started(task_id, claimed.lease_token),
                                                      return_exceptions=True)
            task = await user.get(task_id)
            if isinstance(started, LeaseLost):  # the cancel came first: never run
                assert task.status is TaskStatus.CANCELLED and task.started_at is None
                outcomes.add("cancelled unrun")
            else:
                assert not isinstance(started, BaseException), started
                assert task.status is TaskStatus.RUNNING and task.cancel_requested and task.started_at is not None
                assert (await worker.extend_lease(task_id, claimed.lease_token)).cancel_requested
                await worker.mark_cancelled(task_id, claimed.lease_token)
                outcomes.add("flagged")
            assert not isinstance(cancelled, BaseException), cancelled
        assert {t.status for t in await user.list(limit=20)} == {TaskStatus.CANCELLED}
        assert outcomes, "no race was run"
    finally:
        await user.aclose()
        await worker.aclose()
        await asyncio.gather(*(engine.dispose() for engine in engines))


async def test_a_progress_report_marks_the_start_of_a_worker_that_does_not_report_it(queue: TaskQueue) -> None:
    [task_id] = await queue.create("resize", GRAPH, {})
    claimed = await queue.claim_next("w1", ["resize"])
    assert claimed is not None
    await queue.report_progress(task_id, claimed.lease_token, progress=20, current_node="1")
    task = await queue.get(task_id)
    assert task.status is TaskStatus.RUNNING and task.started_at is not None
    first_start = task.started_at
    await asyncio.sleep(0.02)
    await queue.report_progress(task_id, claimed.lease_token, progress=60, current_node="1")
    assert (await queue.get(task_id)).started_at == first_start


async def test_an_expired_claim_goes_back_to_pending_and_a_released_one_too(queue: TaskQueue) -> None:
    first, second = await queue.create("resize", GRAPH, {}, count=2)
    expired = await queue.claim_next("w1", ["resize"])
    released = await queue.claim_next("w1", ["resize"])
    assert expired is not None and released is not None

    assert await queue.requeue_expired(now=datetime.now(UTC) + timedelta(hours=1)) == 2
    for task_id in (first, second):
        task = await queue.get(task_id)
        assert (task.status, task.started_at, task.worker_id) == (TaskStatus.PENDING, None, None)
    again = await queue.claim_next("w2", ["resize"])
    assert again is not None and again.id == first
    await queue.release(again.id, again.lease_token)
    assert (await queue.get(first)).status is TaskStatus.PENDING
