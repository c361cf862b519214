"""The workers table on every database: reports never touch the admin's allowed flows; restricting and lifting."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from visionatrix.errors import NotFound
from visionatrix.queue.events import TaskEvents
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.models import WorkerRecord, effective_flows


def _report(worker_id: str = "gpu-1", flows: tuple[str, ...] = ("a", "b", "c")) -> WorkerRecord:
    return WorkerRecord(worker_id=worker_id, mode="WORKER_HTTP", device="cuda:0", installed_flows=list(flows),
                        current_task_id=None, last_seen_at=datetime.now(UTC))


async def test_allowed_flows_survive_reports_and_can_be_lifted(queue: TaskQueue) -> None:
    assert await queue.upsert_worker(_report()) is None
    record = await queue.set_allowed_flows("gpu-1", ["b", "z"])
    assert record.allowed_flows == ["b", "z"] and record.installed_flows == ["a", "b", "c"]
    assert await queue.upsert_worker(_report(flows=("a", "b"))) == ["b", "z"], "a report keeps the restriction"
    assert await queue.allowed_flows("gpu-1") == ["b", "z"]
    (listed,) = await queue.list_workers()
    assert (listed.installed_flows, listed.allowed_flows) == (["a", "b"], ["b", "z"])
    assert effective_flows(listed.installed_flows, listed.allowed_flows) == ["b"]
    assert (await queue.set_allowed_flows("gpu-1", None)).allowed_flows is None
    assert await queue.upsert_worker(_report()) is None
    assert (await queue.set_allowed_flows("gpu-1", [])).allowed_flows == [], "an empty list allows nothing"
    assert effective_flows(["a"], []) == []


async def test_restricting_an_unknown_worker_is_not_found(queue: TaskQueue) -> None:
    with pytest.raises(NotFound):
        await queue.set_allowed_flows("nobody", ["a"])
    assert await queue.allowed_flows("nobody") is None


async def test_setting_the_same_restriction_twice_is_fine(queue: TaskQueue) -> None:
    await queue.upsert_worker(_report())
    await queue.set_allowed_flows("gpu-1", ["a"])
    assert (await queue.set_allowed_flows("gpu-1", ["a"])).allowed_flows == ["a"]  # MySQL: 0 rows "changed"


async def test_resources_and_the_stop_round_trip_and_each_change_is_an_event(queue: TaskQueue,
                                                                           events: TaskEvents) -> None:
    heard = events.subscribe()
    resources = {"device_name": "cuda:0 NVIDIA H200", "device_memory_total": 150_000_000_000,
                 "device_memory_free": 149_000_000_000, "ram_total": 137_000_000_000, "ram_free": None}
    record = _report()
    record.resources = resources
    await queue.upsert_worker(record)
    (listed,) = await queue.list_workers()
    assert listed.resources == resources and listed.stopped_at is None
    stopped = _report()
    stopped.stopped_at = datetime.now(UTC)
    await queue.upsert_worker(stopped)
    (listed,) = await queue.list_workers()
    assert listed.resources is None and listed.stopped_at is not None
    await queue.set_allowed_flows("gpu-1", ["a"])
    assert [await anext(heard) for _ in range(3)] == [{"type": "worker_updated", "worker_id": "gpu-1"}] * 3
    await heard.aclose()


async def test_commands_are_taken_once_in_order_and_only_by_their_worker(queue: TaskQueue) -> None:
    await queue.upsert_worker(_report("gpu-1"))
    await queue.upsert_worker(_report("gpu-2"))
    await queue.queue_command("gpu-1", {"type": "install", "names": ["a", "b"]})
    await queue.queue_command("gpu-2", {"type": "free"})
    await queue.queue_command("gpu-1", {"type": "free"})
    assert await queue.take_commands("gpu-1") == [{"type": "install", "names": ["a", "b"]}, {"type": "free"}]
    assert await queue.take_commands("gpu-1") == [], "a command is handed out once"
    assert await queue.take_commands("gpu-2") == [{"type": "free"}]
    assert await queue.take_commands("nobody") == []


async def test_a_command_for_an_unknown_worker_is_not_found(queue: TaskQueue) -> None:
    with pytest.raises(NotFound):
        await queue.queue_command("nobody", {"type": "free"})


async def test_a_report_stores_the_workers_models(queue: TaskQueue) -> None:
    models = {"present": ["4x-UltraSharp"], "loaded": [{"name": "x.pth", "kind": "upscale", "bytes": 10,
                                                         "where": "ram"}], "ram_bytes": 10, "vram_bytes": 0,
              "installing": {}}
    record = _report()
    record.models = models
    await queue.upsert_worker(record)
    (listed,) = await queue.list_workers()
    assert listed.models == models


async def test_a_workers_install_is_announced_when_it_moves_and_its_end_once(queue: TaskQueue,
                                                                            events: TaskEvents) -> None:
    announced = events.subscribe()

    def report(state: str, done: int) -> WorkerRecord:
        record = _report()
        record.models = {"present": [], "loaded": [], "ram_bytes": 0, "vram_bytes": 0, "installing": {
            "m": {"state": state, "bytes_done": done, "bytes_total": 10, "speed_bps": 1.0, "eta_s": None,
                  "error": None}}}
        return record

    for state, done in (("downloading", 3), ("downloading", 3), ("downloading", 7), ("installed", 10),
                        ("installed", 10), ("installed", 10)):
        await queue.upsert_worker(report(state, done))
    progress = [(e["state"], e["bytes_done"]) for e in announced.drain() if e["type"] == "model_progress"]
    assert progress == [("downloading", 3), ("downloading", 7), ("installed", 10)]
