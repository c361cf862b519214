"""Create, read, finish, fail, restart, delete, workers — and the events each change publishes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from visionatrix.db.tables import Task, TaskFile
from visionatrix.errors import Conflict, LeaseLost, NotFound
from visionatrix.queue.events import TaskEvents
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.models import FileRecord, TaskStatus, WorkerRecord

GRAPH = {"1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "out"}}}
INPUT = FileRecord(kind="input", name="in.png", node_id=None, size_bytes=12, sha256="a" * 64, param="image")


def drain(subscription) -> list[dict]:
    return subscription.drain()


async def count_rows(queue: TaskQueue, table) -> int:
    async with queue.engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()


async def test_create_makes_count_pending_tasks_with_their_input_files(queue: TaskQueue, events: TaskEvents):
    subscription = events.subscribe()
    ids = await queue.create("resize", GRAPH, {"width": 640}, count=3, priority=2, files=[INPUT])

    assert len(ids) == 3 and ids == sorted(ids) and len(set(ids)) == 3
    for task_id in ids:
        task = await queue.get(task_id)
        assert (task.flow, task.status, task.priority, task.params, task.graph) == (
            "resize", TaskStatus.PENDING, 2, {"width": 640}, GRAPH)
        assert (task.progress, task.attempt, task.cancel_requested, task.error, task.worker_id) == (
            0.0, 0, False, None, None)
        assert task.files == [INPUT]
        assert task.created_at is not None and task.created_at.tzinfo is not None
        assert task.created_at.utcoffset() == timedelta(0)
        assert abs(task.created_at - datetime.now(UTC)) < timedelta(seconds=30)
    assert [(e["type"], e["task_id"], e["flow"]) for e in drain(subscription)] == [
        ("task_queued", task_id, "resize") for task_id in ids]


async def test_one_task_without_files_is_stored_as_a_batch_task_is(queue: TaskQueue, events: TaskEvents):
    """A single task without files takes the queue's driver path (one ``INSERT ... RETURNING`` on PostgreSQL and
    SQLite files); its row must equal one written by the transaction of a batch, column for column."""
    subscription = events.subscribe()
    (alone,) = await queue.create("resize", GRAPH, {"width": 640, "note": None}, priority=-3)
    batch = await queue.create("resize", GRAPH, {"width": 640, "note": None}, count=2, priority=-3)
    prompt = await queue.create("resize", GRAPH, {}, columns={"prompt_id": "p-1", "client_id": None,
                                                              "prompt_extra": {"extra_pnginfo": {"a": 1}}})
    assert alone < batch[0] < batch[1] < prompt[0]
    async with queue.engine.connect() as conn:
        rows = {row.id: row._asdict() for row in await conn.execute(select(Task.__table__))}
    skip = {"id", "created_at", "updated_at"}
    assert {k: v for k, v in rows[alone].items() if k not in skip} == {
        k: v for k, v in rows[batch[0]].items() if k not in skip}
    assert rows[alone]["error"] is None and rows[alone]["prompt_extra"] is None  # SQL NULL, not JSON null
    assert rows[alone]["created_at"].tzinfo is not None
    assert (rows[prompt[0]]["prompt_id"], rows[prompt[0]]["prompt_extra"]) == ("p-1", {"extra_pnginfo": {"a": 1}})
    assert [e["task_id"] for e in drain(subscription)] == [alone, *batch, *prompt]
    async with queue.engine.connect() as conn:
        nulls = (await conn.execute(select(func.count()).select_from(Task.__table__)
                                    .where(Task.__table__.c.error.is_(None)))).scalar_one()
    assert nulls == 4


async def test_before_commit_sees_the_ids_and_its_failure_leaves_nothing(queue: TaskQueue, events: TaskEvents):
    seen: list[list[int]] = []

    async def adopt(task_ids: list[int]) -> None:
        seen.append(task_ids)
        raise OSError("disk full")

    subscription = events.subscribe()
    with pytest.raises(OSError, match="disk full"):
        await queue.create("resize", GRAPH, {}, count=2, files=[INPUT], before_commit=adopt)

    assert len(seen) == 1 and len(seen[0]) == 2
    assert await count_rows(queue, Task.__table__) == 0
    assert await count_rows(queue, TaskFile.__table__) == 0
    assert drain(subscription) == []
    with pytest.raises(NotFound):
        await queue.get(seen[0][0])


async def test_create_refuses_a_count_below_one(queue: TaskQueue):
    with pytest.raises(ValueError, match="count"):
        await queue.create("resize", GRAPH, {}, count=0)


async def test_get_of_a_missing_task_is_not_found(queue: TaskQueue):
    with pytest.raises(NotFound) as caught:
        await queue.get(424242)
    assert (caught.value.kind, caught.value.ident) == ("task", "424242")


async def test_finish_stores_outputs_timings_and_full_progress(queue: TaskQueue, events: TaskEvents):
    [task_id] = await queue.create("resize", GRAPH, {}, files=[INPUT])
    claimed = await queue.claim_next("w1", ["resize"])
    assert claimed is not None and claimed.id == task_id
    subscription = events.subscribe()

    state = await queue.report_progress(task_id, claimed.lease_token, progress=40.0, current_node="2")
    assert state.cancel_requested is False
    running = await queue.get(task_id)
    assert (running.progress, running.current_node, running.status) == (40.0, "2", TaskStatus.RUNNING)

    output = FileRecord(kind="output", name="sub/out_00001_.png", node_id="2", size_bytes=99, sha256="b" * 64,
                        param=None)
    await queue.mark_finished(task_id, claimed.lease_token, timings={"1": 0.25, "2": 1.5}, outputs=[output])

    task = await queue.get(task_id)
    assert task.status == TaskStatus.FINISHED
    assert (task.progress, task.current_node, task.timings) == (100.0, None, {"1": 0.25, "2": 1.5})
    assert task.files == [INPUT, output]
    assert task.finished_at is not None and task.started_at is not None and task.finished_at >= task.started_at
    assert [(e["type"], e.get("progress"), e.get("current_node")) for e in drain(subscription)] == [
        ("task_progressed", 40.0, "2"), ("task_finished", None, None)]
    with pytest.raises(LeaseLost):  # finishing twice: the run is over
        await queue.mark_finished(task_id, claimed.lease_token, timings={}, outputs=[])


async def test_fail_stores_node_class_message_and_traceback(queue: TaskQueue, events: TaskEvents):
    [task_id] = await queue.create("resize", GRAPH, {})
    claimed = await queue.claim_next("w1", ["resize"])
    assert claimed is not None
    subscription = events.subscribe()

    await queue.mark_failed(task_id, claimed.lease_token, node_id="2", class_type="SaveImage",
                            message="node 2 (SaveImage) failed: OSError: disk full",
                            traceback="Traceback (most recent call last):\n  ...\nOSError: disk full\n")

    task = await queue.get(task_id)
    assert task.status == TaskStatus.FAILED
    assert task.error == {"node_id": "2", "class_type": "SaveImage",
                          "message": "node 2 (SaveImage) failed: OSError: disk full",
                          "traceback": "Traceback (most recent call last):\n  ...\nOSError: disk full\n"}
    [event] = drain(subscription)
    assert event["type"] == "task_failed" and event["error"]["node_id"] == "2" and "traceback" not in event["error"]


async def test_restart_puts_a_failed_task_back_to_pending_with_a_clean_slate(queue: TaskQueue, events: TaskEvents):
    [task_id] = await queue.create("resize", GRAPH, {})
    claimed = await queue.claim_next("w1", ["resize"])
    assert claimed is not None
    await queue.report_progress(task_id, claimed.lease_token, progress=70.0, current_node="2")
    await queue.mark_failed(task_id, claimed.lease_token, node_id="2", class_type="SaveImage", message="boom",
                            traceback=None)
    subscription = events.subscribe()

    task = await queue.restart(task_id)

    assert task.status == TaskStatus.PENDING
    assert (task.attempt, task.error, task.progress, task.worker_id, task.finished_at, task.started_at) == (
        0, None, 0.0, None, None, None)
    assert [e["type"] for e in drain(subscription)] == ["task_restarted"]
    again = await queue.claim_next("w2", ["resize"])
    assert again is not None and again.id == task_id and again.attempt == 1


@pytest.mark.parametrize("state", ["pending", "claimed", "running", "finished"])
async def test_restart_is_a_conflict_unless_failed_or_cancelled(queue: TaskQueue, state: str):
    [task_id] = await queue.create("resize", GRAPH, {})
    if state != "pending":
        claimed = await queue.claim_next("w1", ["resize"])
        assert claimed is not None
        if state != "claimed":
            await queue.mark_started(task_id, claimed.lease_token)
        if state == "finished":
            await queue.mark_finished(task_id, claimed.lease_token, timings={}, outputs=[])
    with pytest.raises(Conflict, match=state):
        await queue.restart(task_id)
    assert (await queue.get(task_id)).status == state


async def test_restart_and_cancel_and_delete_of_a_missing_task_are_not_found(queue: TaskQueue):
    for action in (queue.restart, queue.cancel, queue.delete):
        with pytest.raises(NotFound):
            await action(777)


async def test_delete_removes_the_task_and_its_file_rows(queue: TaskQueue, events: TaskEvents):
    [task_id, other] = await queue.create("resize", GRAPH, {}, count=2, files=[INPUT])
    subscription = events.subscribe()

    await queue.delete(task_id)

    with pytest.raises(NotFound):
        await queue.get(task_id)
    assert (await queue.get(other)).files == [INPUT]
    assert await count_rows(queue, TaskFile.__table__) == 1
    assert [(e["type"], e["task_id"]) for e in drain(subscription)] == [("task_deleted", task_id)]


async def test_delete_of_a_running_task_is_a_conflict(queue: TaskQueue):
    [task_id] = await queue.create("resize", GRAPH, {})
    claimed = await queue.claim_next("w1", ["resize"])
    assert claimed is not None
    with pytest.raises(Conflict, match="is claimed"):
        await queue.delete(task_id)
    await queue.mark_started(task_id, claimed.lease_token)
    with pytest.raises(Conflict, match="is running"):
        await queue.delete(task_id)
    assert (await queue.get(task_id)).status == TaskStatus.RUNNING
    await queue.mark_finished(task_id, claimed.lease_token, timings={}, outputs=[])
    await queue.delete(task_id)
    with pytest.raises(NotFound):
        await queue.get(task_id)


async def test_list_is_newest_first_and_filters_by_status_and_flow(queue: TaskQueue):
    a = await queue.create("resize", GRAPH, {}, count=3)
    b = await queue.create("upscale", GRAPH, {}, count=2)
    claimed = await queue.claim_next("w1", ["upscale"])
    assert claimed is not None and claimed.id == b[0]
    assert [t.id for t in await queue.list(status=TaskStatus.CLAIMED)] == [b[0]]
    assert await queue.list(status=TaskStatus.RUNNING) == []
    await queue.mark_started(b[0], claimed.lease_token)
    assert await queue.list(status=TaskStatus.CLAIMED) == []

    assert [t.id for t in await queue.list()] == sorted(a + b, reverse=True)
    assert [t.id for t in await queue.list(limit=2, offset=1)] == sorted(a + b, reverse=True)[1:3]
    assert [t.id for t in await queue.list(flow="resize")] == sorted(a, reverse=True)
    assert [t.id for t in await queue.list(status=TaskStatus.RUNNING)] == [b[0]]
    assert [t.id for t in await queue.list(status=TaskStatus.PENDING, flow="upscale")] == [b[1]]
    assert await queue.list(status=TaskStatus.FAILED) == []


async def test_upsert_worker_inserts_then_replaces_the_heartbeat(queue: TaskQueue):
    seen_at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    first = WorkerRecord(worker_id="host:1", mode="DEFAULT", device="cpu", installed_flows=["resize"],
                         current_task_id=None, last_seen_at=seen_at)
    await queue.upsert_worker(first)
    await queue.upsert_worker(WorkerRecord(worker_id="host:0", mode="WORKER", device="cuda:0", installed_flows=[],
                                           current_task_id=None, last_seen_at=seen_at))
    later = WorkerRecord(worker_id="host:1", mode="DEFAULT", device="cpu", installed_flows=["resize", "upscale"],
                         current_task_id=5, last_seen_at=seen_at + timedelta(seconds=10))
    await queue.upsert_worker(later)

    workers = await queue.list_workers()

    assert [w.worker_id for w in workers] == ["host:0", "host:1"]
    assert workers[1] == later
    assert workers[1].last_seen_at.tzinfo is not None


async def test_a_naive_datetime_is_refused(queue: TaskQueue):
    record = WorkerRecord(worker_id="w", mode="DEFAULT", device="cpu", installed_flows=[], current_task_id=None,
                          last_seen_at=datetime(2026, 1, 1))
    with pytest.raises(Exception, match="naive datetime"):
        await queue.upsert_worker(record)
