"""``tasks.peak_vram_bytes`` on every database: what a run's worker measured reaches the task JSON of
``/vapi/tasks`` whichever way the outcome was stored (the queue's single-statement finish, the finish with output
rows, a failure, the worker HTTP routes); a restart forgets it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from visionatrix.flows.catalog import FlowCatalog
from visionatrix.nodes.registry import NodeRegistry
from visionatrix.queue.events import TaskEvents
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.models import ClaimedTask, FileRecord
from visionatrix.server.app import create_app
from visionatrix.server.services import Services
from visionatrix.storage.files import TaskStorage

GRAPH = {"1": {"class_type": "Noop", "inputs": {}}}
OUTPUT = FileRecord(kind="output", name="out_00001_.png", node_id="1", size_bytes=3, sha256="c" * 64, param=None)
LARGEST = 2**62
"""The most a worker may report (``worker_request.MAX_BYTES``): it must survive every database's BIGINT."""


@pytest.fixture
async def http(queue: TaskQueue, events: TaskEvents, tmp_path: Path) -> AsyncIterator[TestClient]:
    services = Services(queue=queue, storage=TaskStorage(tmp_path / "files", max_upload_bytes=1000),
                        flows=FlowCatalog([], tmp_path / "user_flows", {}), registry=NodeRegistry(), events=events,
                        max_image_pixels=1_000_000, version="test")
    async with TestClient(TestServer(create_app(services))) as client:
        yield client


async def _claims(queue: TaskQueue, count: int) -> list[ClaimedTask]:
    await queue.create("f", GRAPH, {}, count=count)
    claims = [await queue.claim_next("w", ["f"]) for _ in range(count)]
    assert all(claim is not None for claim in claims)
    return [claim for claim in claims if claim is not None]


async def _peaks(http: TestClient) -> dict[int, Any]:
    response = await http.get("/vapi/tasks")
    assert response.status == 200, await response.text()
    return {task["id"]: task["peak_vram_bytes"] for task in (await response.json())["tasks"]}


async def test_the_peak_each_outcome_carried_shows_in_the_task_json(queue: TaskQueue, http: TestClient) -> None:
    alone, with_rows, on_cpu, failed, failed_early = await _claims(queue, 5)
    await queue.mark_finished(alone.id, alone.lease_token, timings={"1": 0.5}, peak_vram_bytes=12345)
    await queue.mark_finished(with_rows.id, with_rows.lease_token, timings={}, outputs=[OUTPUT],
                              peak_vram_bytes=LARGEST)
    await queue.mark_finished(on_cpu.id, on_cpu.lease_token, timings={})
    await queue.mark_failed(failed.id, failed.lease_token, node_id="1", class_type="Noop", message="OOM",
                            traceback=None, peak_vram_bytes=777)
    await queue.mark_failed(failed_early.id, failed_early.lease_token, node_id=None, class_type=None,
                            message="x", traceback=None)

    assert await _peaks(http) == {alone.id: 12345, with_rows.id: LARGEST, on_cpu.id: None, failed.id: 777,
                                  failed_early.id: None}
    one = await (await http.get(f"/vapi/tasks/{alone.id}")).json()
    assert (one["status"], one["peak_vram_bytes"], one["timings"]) == ("finished", 12345, {"1": 0.5})

    assert (await http.post(f"/vapi/tasks/{failed.id}/restart")).status == 200
    assert (await _peaks(http))[failed.id] is None


async def test_a_server_mode_worker_reports_the_peak_through_the_worker_routes(queue: TaskQueue,
                                                                               http: TestClient) -> None:
    await queue.create("f", GRAPH, {}, count=3)
    tasks = []
    for _ in range(3):
        response = await http.post("/vapi/worker/claim", json={"worker_id": "w", "installed_flows": ["f"],
                                                               "wait_s": 0})
        tasks.append((await response.json())["task"])
    finished, failed, on_cpu = tasks
    outcomes = [(finished, "finish", {"timings": {"1": 0.1}, "peak_vram_bytes": 12345}),
                (failed, "fail", {"message": "OOM", "peak_vram_bytes": 54321}),
                (on_cpu, "finish", {})]
    for task, action, body in outcomes:
        response = await http.post(f"/vapi/worker/tasks/{task['id']}/{action}",
                                   json={"lease_token": task["lease_token"], **body})
        assert response.status == 200, await response.text()
    bad = await http.post(f"/vapi/worker/tasks/{on_cpu['id']}/finish",
                          json={"lease_token": on_cpu["lease_token"], "peak_vram_bytes": 2**64})
    assert bad.status == 400 and set((await bad.json())["details"]) == {"peak_vram_bytes"}

    assert await _peaks(http) == {finished["id"]: 12345, failed["id"]: 54321, on_cpu["id"]: None}
