"""The server announces what a Database-FS worker (another process: here a second queue without events on the same
database) changes, on every database, and nothing twice that it announced itself."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from visionatrix.queue.events import TaskEvents
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.models import WorkerRecord
from visionatrix.server.event_feed import LiveStreams
from visionatrix.server.external_changes import ExternalChanges

GRAPH = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}


def _report(mode: str = "WORKER_DB", task_id: int | None = None) -> WorkerRecord:
    return WorkerRecord(worker_id="db-worker", mode=mode, device="cpu", installed_flows=["f"],
                        current_task_id=task_id, last_seen_at=datetime.now(UTC))


async def _watching(queue: TaskQueue, events: TaskEvents) -> tuple[ExternalChanges, object]:
    streams = LiveStreams()
    streams.listeners = 1
    watch = ExternalChanges(queue, events, streams)
    watch._heard = events.subscribe()
    heard = events.subscribe()
    await watch.look()
    return watch, heard


def _kinds(events: list[dict]) -> list[tuple]:
    return [(e["type"], e.get("task_id") or e.get("worker_id"), e.get("progress")) for e in events]


async def test_a_database_workers_run_is_announced_once(engine: AsyncEngine, queue: TaskQueue,
                                                        events: TaskEvents) -> None:
    other = TaskQueue(engine, lease_s=30.0)  # the worker's process: it publishes to nobody here
    try:
        watch, heard = await _watching(queue, events)
        (task_id,) = await queue.create("f", GRAPH, {})
        assert [e["type"] for e in heard.drain()] == ["task_queued"]
        await watch.look()
        assert heard.drain() == [], "no worker reported yet, and nothing changed"

        await other.upsert_worker(_report())
        claimed = await other.claim_next("db-worker", ["f"])
        assert claimed is not None and claimed.id == task_id
        await watch.look()
        [updated, claimed_event] = heard.drain()
        assert _kinds([updated]) == [("worker_updated", "db-worker", None)]
        assert (claimed_event["type"], claimed_event["task_id"], claimed_event["status"],
                claimed_event["worker_id"]) == ("task_claimed", task_id, "claimed", "db-worker")
        await watch.look()
        assert heard.drain() == [], "nothing changed"
        await other.mark_started(task_id, claimed.lease_token)
        await watch.look()
        [started] = heard.drain()
        assert (started["type"], started["task_id"], started["status"]) == ("task_started", task_id, "running")
        await watch.look()
        assert heard.drain() == [], "nothing changed"

        await other.report_progress(task_id, claimed.lease_token, progress=40.0, current_node="1")
        await watch.look()
        [event] = heard.drain()
        assert (event["type"], event["progress"], event["current_node"], event["external"]) == \
            ("task_progressed", 40.0, "1", True)

        await other.mark_finished(task_id, claimed.lease_token, timings={"1": 0.1})
        await watch.look()
        assert _kinds(heard.drain()) == [("task_finished", task_id, None)]
        await watch.look()
        assert heard.drain() == []

        # what this process announces itself is not announced again
        (second,) = await queue.create("f", GRAPH, {})
        await queue.cancel(second)
        assert [e["type"] for e in heard.drain()] == ["task_queued", "task_cancelled"]
        await watch.look()
        assert heard.drain() == []
    finally:
        await other.aclose()


async def test_a_quick_run_a_requeue_and_a_deletion_by_another_process_are_announced(
        engine: AsyncEngine, queue: TaskQueue, events: TaskEvents) -> None:
    other = TaskQueue(engine, lease_s=30.0)
    try:
        await other.upsert_worker(_report())
        watch, heard = await _watching(queue, events)
        first, second = await queue.create("f", GRAPH, {}, count=2)
        heard.drain()
        quick = await other.claim_next("db-worker", ["f"])
        assert quick is not None and quick.id == first
        await other.mark_finished(first, quick.lease_token, timings={})  # between two looks
        slow = await other.claim_next("db-worker", ["f"])
        assert slow is not None and slow.id == second
        await watch.look()
        assert _kinds(heard.drain()) == [("task_finished", first, None), ("task_claimed", second, None)]
        await other.release(second, slow.lease_token)
        await watch.look()
        [event] = heard.drain()
        assert (event["type"], event["task_id"], event["requeued"]) == ("task_queued", second, True)
        await other.delete(second)
        await watch.look()
        assert _kinds(heard.drain()) == [("task_deleted", second, None)]
    finally:
        await other.aclose()


async def test_without_a_database_worker_only_workers_are_looked_at(engine: AsyncEngine, queue: TaskQueue,
                                                                    events: TaskEvents) -> None:
    other = TaskQueue(engine, lease_s=30.0)
    try:
        await other.upsert_worker(_report(mode="WORKER_HTTP"))
        watch, heard = await _watching(queue, events)
        (task_id,) = await queue.create("f", GRAPH, {})
        claimed = await other.claim_next("db-worker", ["f"])
        assert claimed is not None
        await other.upsert_worker(_report(mode="WORKER_HTTP", task_id=task_id))
        await watch.look()
        assert _kinds(heard.drain()) == [("task_queued", task_id, None), ("worker_updated", "db-worker", None)]
    finally:
        await other.aclose()


async def test_what_it_knows_stays_bounded(engine: AsyncEngine, queue: TaskQueue, events: TaskEvents,
                                           monkeypatch) -> None:
    from visionatrix.server import external_changes

    monkeypatch.setattr(external_changes, "WATCHED_PENDING", 3)
    other = TaskQueue(engine, lease_s=30.0)
    try:
        await other.upsert_worker(_report())
        watch, heard = await _watching(queue, events)
        ids = await queue.create("f", GRAPH, {}, count=10)
        await watch.look()
        assert sorted(watch._tasks) == ids[:3], "the oldest pending ones only"
        heard.drain()
        claimed = await other.claim_next("db-worker", ["f"])  # the oldest
        assert claimed is not None and claimed.id == ids[0]
        await watch.look()
        assert _kinds(heard.drain()) == [("task_claimed", ids[0], None)]
    finally:
        await other.aclose()
