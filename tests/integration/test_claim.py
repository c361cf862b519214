"""Claiming: exactly once under a race, in order (priority, last-flow affinity, FIFO), only installed flows."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

from tests.integration.conftest import Database
from visionatrix.queue.events import TaskEvents
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.models import TaskStatus

GRAPH = {"1": {"class_type": "Noop", "inputs": {}}}
CLAIMERS = 8
TASKS = 240


async def test_claim_race_every_task_is_claimed_exactly_once(db: Database):
    """Eight claimers, each on its own engine (own connections), drain 240 tasks at the same time."""
    engines = [db.engine() for _ in range(CLAIMERS + 1)]
    try:
        producer = TaskQueue(engines[0])
        ids = await producer.create("noop", GRAPH, {}, count=TASKS)
        start = asyncio.Event()
        claimed: dict[str, list[int]] = {}

        async def claimer(name: str, queue: TaskQueue) -> None:
            mine = claimed.setdefault(name, [])
            await start.wait()
            while (task := await queue.claim_next(name, ["noop"])) is not None:
                mine.append(task.id)
                await queue.mark_finished(task.id, task.lease_token, timings={}, outputs=[])

        workers = [asyncio.create_task(claimer(f"w{i}", TaskQueue(engine)))
                   for i, engine in enumerate(engines[1:])]
        await asyncio.sleep(0.05)
        start.set()
        await asyncio.gather(*workers)

        every = [task_id for mine in claimed.values() for task_id in mine]
        duplicates = [task_id for task_id, n in Counter(every).items() if n > 1]
        assert duplicates == []
        assert sorted(every) == sorted(ids)
        assert sum(1 for mine in claimed.values() if mine) >= 2, "the claimers did not overlap at all"
        tasks = await producer.list(limit=TASKS)
        assert {t.status for t in tasks} == {TaskStatus.FINISHED}
        assert {t.attempt for t in tasks} == {1}
        assert {t.id: t.worker_id for t in tasks} == {
            task_id: name for name, mine in claimed.items() for task_id in mine}
    finally:
        await asyncio.gather(*(engine.dispose() for engine in engines))


async def test_claim_sets_the_lease_and_the_run_fields(queue: TaskQueue, events: TaskEvents):
    [task_id] = await queue.create("resize", GRAPH, {"width": 8})
    subscription = events.subscribe()
    before = datetime.now(UTC)

    task = await queue.claim_next("host:1", ["resize"])

    assert task is not None
    assert (task.id, task.flow, task.graph, task.params, task.attempt) == (task_id, "resize", GRAPH, {"width": 8}, 1)
    assert len(task.lease_token) >= 32
    assert before + timedelta(seconds=29) < task.lease_expires_at < datetime.now(UTC) + timedelta(seconds=31)
    record = await queue.get(task_id)
    assert (record.status, record.worker_id, record.attempt) == (TaskStatus.CLAIMED, "host:1", 1)
    assert record.started_at is None, "claimed, not started: its run is timed from the worker's start report"
    event = await anext(subscription)
    assert (event["type"], event["task_id"], event["worker_id"], event["status"]) == (
        "task_claimed", task_id, "host:1", "claimed")
    assert await queue.claim_next("host:2", ["resize"]) is None


async def claim_order(queue: TaskQueue, installed: list[str], *, last_flow: str | None = None) -> list[str]:
    """Flows of the tasks claimed one after another (each finished at once), keeping ``last_flow`` fixed."""
    order = []
    while (task := await queue.claim_next("w", installed, last_flow=last_flow)) is not None:
        order.append(task.params["name"])
        await queue.mark_finished(task.id, task.lease_token, timings={}, outputs=[])
    return order


async def test_claim_takes_higher_priority_first_then_oldest(queue: TaskQueue):
    for name, priority in [("a0", 0), ("b5", 5), ("c0", 0), ("d9", 9), ("e5", 5), ("f-1", -1)]:
        await queue.create("resize", GRAPH, {"name": name}, priority=priority)

    assert await claim_order(queue, ["resize"]) == ["d9", "b5", "e5", "a0", "c0", "f-1"]


async def test_claim_prefers_the_last_flow_within_the_same_priority(queue: TaskQueue):
    await queue.create("resize", GRAPH, {"name": "resize-1"})
    await queue.create("upscale", GRAPH, {"name": "upscale-1"})
    await queue.create("resize", GRAPH, {"name": "resize-2"})
    await queue.create("upscale", GRAPH, {"name": "upscale-2"})

    order = await claim_order(queue, ["resize", "upscale"], last_flow="upscale")

    assert order == ["upscale-1", "upscale-2", "resize-1", "resize-2"]


async def test_priority_outranks_the_last_flow(queue: TaskQueue):
    await queue.create("upscale", GRAPH, {"name": "upscale-0"}, priority=0)
    await queue.create("resize", GRAPH, {"name": "resize-3"}, priority=3)
    await queue.create("upscale", GRAPH, {"name": "upscale-3"}, priority=3)

    assert await claim_order(queue, ["resize", "upscale"], last_flow="upscale") == [
        "upscale-3", "resize-3", "upscale-0"]


async def test_without_a_last_flow_the_order_is_fifo_across_flows(queue: TaskQueue):
    for name in ["resize-1", "upscale-1", "resize-2"]:
        await queue.create(name.split("-")[0], GRAPH, {"name": name})

    assert await claim_order(queue, ["resize", "upscale"]) == ["resize-1", "upscale-1", "resize-2"]


async def test_a_last_flow_that_is_not_installed_is_ignored(queue: TaskQueue):
    await queue.create("resize", GRAPH, {"name": "resize-1"})
    await queue.create("upscale", GRAPH, {"name": "upscale-1"})

    assert await claim_order(queue, ["resize"], last_flow="upscale") == ["resize-1"]


async def test_claim_next_skips_tasks_of_flows_not_installed(queue: TaskQueue):
    await queue.create("upscale", GRAPH, {"name": "upscale-1"}, priority=9)
    await queue.create("resize", GRAPH, {"name": "resize-1"})
    await queue.create("inpaint", GRAPH, {"name": "inpaint-1"})

    assert await claim_order(queue, ["resize", "inpaint"]) == ["resize-1", "inpaint-1"]
    assert await queue.claim_next("w", []) is None
    assert await queue.claim_next("w", ["other"]) is None
    assert [t.params["name"] for t in await queue.list(status=TaskStatus.PENDING)] == ["upscale-1"]


async def test_claim_never_takes_a_task_that_is_not_pending(queue: TaskQueue):
    ids = await queue.create("resize", GRAPH, {"name": "x"}, count=4)
    running = await queue.claim_next("w", ["resize"])
    assert running is not None
    await queue.cancel(ids[1])
    failed = await queue.claim_next("w", ["resize"])
    assert failed is not None and failed.id == ids[2]
    await queue.mark_failed(failed.id, failed.lease_token, node_id=None, class_type=None, message="x",
                            traceback=None)

    last = await queue.claim_next("w", ["resize"])

    assert last is not None and last.id == ids[3]
    assert await queue.claim_next("w", ["resize"]) is None
