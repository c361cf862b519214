"""Cancel: a pending task at once, a running one through a flag its worker sees on its next heartbeat."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from visionatrix.errors import Conflict, LeaseLost
from visionatrix.queue.events import TaskEvents
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.models import TaskStatus

GRAPH = {"1": {"class_type": "Noop", "inputs": {}}}


async def test_cancel_of_a_pending_task_is_immediate(queue: TaskQueue, events: TaskEvents):
    [task_id] = await queue.create("resize", GRAPH, {})
    subscription = events.subscribe()

    task = await queue.cancel(task_id)

    assert task.status == TaskStatus.CANCELLED and task.finished_at is not None
    assert (await anext(subscription))["type"] == "task_cancelled"
    assert await queue.claim_next("w", ["resize"]) is None


async def test_cancel_while_running_flags_the_task_for_its_worker(queue: TaskQueue, events: TaskEvents):
    [task_id] = await queue.create("resize", GRAPH, {})
    run = await queue.claim_next("w", ["resize"])
    assert run is not None
    await queue.mark_started(task_id, run.lease_token)
    assert (await queue.extend_lease(task_id, run.lease_token)).cancel_requested is False

    task = await queue.cancel(task_id)
    assert (task.status, task.cancel_requested) == (TaskStatus.RUNNING, True)
    assert (await queue.cancel(task_id)).cancel_requested is True  # asking twice is harmless

    assert (await queue.extend_lease(task_id, run.lease_token)).cancel_requested is True
    state = await queue.report_progress(task_id, run.lease_token, progress=50, current_node="1")
    assert state.cancel_requested is True
    subscription = events.subscribe()
    await queue.mark_cancelled(task_id, run.lease_token)

    task = await queue.get(task_id)
    assert task.status == TaskStatus.CANCELLED and task.finished_at is not None
    assert (await anext(subscription))["type"] == "task_cancelled"
    with pytest.raises(LeaseLost):
        await queue.extend_lease(task_id, run.lease_token)
    restarted = await queue.restart(task_id)
    assert (restarted.status, restarted.cancel_requested) == (TaskStatus.PENDING, False)


@pytest.mark.parametrize("outcome", ["finished", "failed", "cancelled"])
async def test_cancel_of_a_task_that_ended_is_a_conflict(queue: TaskQueue, outcome: str):
    [task_id] = await queue.create("resize", GRAPH, {})
    if outcome == "cancelled":
        await queue.cancel(task_id)
    else:
        run = await queue.claim_next("w", ["resize"])
        assert run is not None
        if outcome == "finished":
            await queue.mark_finished(task_id, run.lease_token, timings={}, outputs=[])
        else:
            await queue.mark_failed(task_id, run.lease_token, node_id=None, class_type=None, message="x",
                                    traceback=None)
    with pytest.raises(Conflict, match=outcome):
        await queue.cancel(task_id)
    assert (await queue.get(task_id)).status == outcome


async def test_a_released_task_whose_cancel_was_requested_ends_cancelled(queue: TaskQueue):
    [task_id] = await queue.create("resize", GRAPH, {})
    run = await queue.claim_next("w", ["resize"])
    assert run is not None
    await queue.mark_started(task_id, run.lease_token)
    await queue.cancel(task_id)

    await queue.release(task_id, run.lease_token)

    assert (await queue.get(task_id)).status == TaskStatus.CANCELLED
    assert await queue.claim_next("w", ["resize"]) is None


async def test_an_expired_task_whose_cancel_was_requested_ends_cancelled(queue: TaskQueue):
    [task_id] = await queue.create("resize", GRAPH, {})
    run = await queue.claim_next("w", ["resize"])
    assert run is not None
    await queue.mark_started(task_id, run.lease_token)
    await queue.cancel(task_id)

    assert await queue.requeue_expired(now=datetime.now(UTC) + timedelta(hours=1)) == 1

    assert (await queue.get(task_id)).status == TaskStatus.CANCELLED
