"""The in-process worker against a real (SQLite) queue, the real executor, nodes and storage."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from visionatrix.db import migrate
from visionatrix.db.engine import create_engine
from visionatrix.executor.run import Executor, ExecutorSettings
from visionatrix.flows import FlowStore, bind_params
from visionatrix.nodes.registry import NodeRegistry
from visionatrix.queue.events import TaskEvents
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.models import TaskStatus
from visionatrix.storage.files import TaskStorage
from visionatrix.worker.daemon import Worker, WorkerOptions
from visionatrix.worker.db_source import DatabaseSource

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "flows" / "examples" / "sample.jpg"


@pytest.fixture(scope="module")
def registry() -> NodeRegistry:
    registry = NodeRegistry()
    registry.load_packs([], core_dir=ROOT / "comfy_nodes")
    return registry


@pytest.fixture
async def setup(tmp_path, registry):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'vix.db'}")
    await migrate.upgrade(engine)
    events = TaskEvents()
    queue = TaskQueue(engine, lease_s=5.0, events=events)
    storage = TaskStorage(tmp_path / "files", max_upload_bytes=10_000_000)
    executor = Executor(registry, ExecutorSettings(device="cpu", temp_dir=tmp_path / "temp"))
    options = WorkerOptions(worker_id="w1", installed_flows=["web_resize_sharpen", "slow", "broken"], lease_s=5.0,
                            progress_interval_s=0.1)
    worker = Worker(DatabaseSource(queue, storage, mode="DEFAULT"), executor, options)
    yield queue, storage, worker, events
    executor.close()
    await engine.dispose()


async def queue_task(queue, storage, flow_name: str, graph: dict) -> int:
    (task_id,) = await queue.create(flow_name, graph, {})
    shutil.copyfile(SAMPLE, storage.input_dir(task_id) / "image.jpg")
    return task_id


def resize_graph(registry) -> dict:
    flow = FlowStore([ROOT / "flows"], registry.object_info()).get("web_resize_sharpen")
    return bind_params(flow, {"width": 160}, {"image": "image.jpg"})


SLOW = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "image.jpg"}},
    "2": {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "red"}},
    "3": {"class_type": "GrowMask", "inputs": {"mask": ["2", 0], "expand": 3000, "tapered_corners": True}},
    "4": {"class_type": "MaskToImage", "inputs": {"mask": ["3", 0]}},
    "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "slow"}},
}


async def start_slow_task(queue, storage, worker):
    """Queue the slow graph, start the worker loop and wait until the task is running."""
    task_id = await queue_task(queue, storage, "slow", SLOW)
    stop = asyncio.Event()
    loop_task = asyncio.create_task(worker.run(stop))
    for _ in range(250):
        if (await queue.get(task_id)).status == TaskStatus.RUNNING:
            return task_id, stop, loop_task
        await asyncio.sleep(0.02)
    raise AssertionError("the slow task never started")


async def test_burst_run_finishes_tasks_and_records_outputs_with_their_node(setup, registry):
    queue, storage, worker, _ = setup
    task_id = await queue_task(queue, storage, "web_resize_sharpen", resize_graph(registry))
    (storage.output_dir(task_id) / "stale_from_an_earlier_run.png").write_bytes(b"old")
    ran = await worker.run(asyncio.Event(), burst=True)
    assert ran == 1
    task = await queue.get(task_id)
    assert task.status == TaskStatus.FINISHED and task.progress == 100
    outputs = [f for f in task.files if f.kind == "output"]
    assert [(f.name, f.node_id) for f in outputs] == [("web_00001_.png", "7")]
    assert set(task.timings) >= {"2", "5", "6", "7"}
    workers = await queue.list_workers()
    assert workers[0].worker_id == "w1" and workers[0].current_task_id is None
    assert workers[0].stopped_at is not None, "the last report of a worker on its way out says so"
    resources = workers[0].resources
    assert resources is not None and resources["device_name"] == "cpu"
    assert resources["ram_total"] > 0 and resources["device_memory_total"] == resources["ram_total"]


async def test_a_failing_node_fails_the_task_with_node_id_and_class(setup):
    queue, storage, worker, _ = setup
    broken = {"1": {"class_type": "LoadImage", "inputs": {"image": "image.jpg"}},
              "2": {"class_type": "ImageCrop", "inputs": {"image": ["1", 0], "width": 4, "height": 4, "x": 9999,
                                                           "y": 0}},
              "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}}
    task_id = await queue_task(queue, storage, "broken", broken)
    await worker.run(asyncio.Event(), burst=True)
    task = await queue.get(task_id)
    assert task.status == TaskStatus.FAILED
    assert (task.error["node_id"], task.error["class_type"]) == ("2", "ImageCrop")
    assert "x" in task.error["message"] and task.error["traceback"]


async def test_cancelling_a_running_task_interrupts_it(setup):
    queue, storage, worker, _ = setup
    task_id, stop, loop_task = await start_slow_task(queue, storage, worker)
    await queue.cancel(task_id)
    for _ in range(300):
        if (await queue.get(task_id)).status == TaskStatus.CANCELLED:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await loop_task
    assert (await queue.get(task_id)).status == TaskStatus.CANCELLED


async def test_progress_writes_are_throttled(setup):
    queue, storage, worker, events = setup
    task_id = await queue_task(queue, storage, "slow", SLOW)
    progressed = []

    async def collect():
        async for event in events.subscribe():
            if event["type"] == "task_progressed":
                progressed.append(event)

    collector = asyncio.create_task(collect())
    started = asyncio.get_running_loop().time()
    await worker.run(asyncio.Event(), burst=True)
    elapsed = asyncio.get_running_loop().time() - started
    collector.cancel()
    assert (await queue.get(task_id)).status == TaskStatus.FINISHED
    # GrowMask alone reports 3,000 in-node steps; writes happen at most every 0.1 s
    assert 1 <= len(progressed) <= elapsed / 0.1 + 3
    assert all(0 <= e["progress"] <= 99 for e in progressed)


async def test_shutdown_releases_the_running_task_back_to_pending(setup):
    queue, storage, worker, _ = setup
    task_id, stop, loop_task = await start_slow_task(queue, storage, worker)
    stop.set()
    await loop_task
    task = await queue.get(task_id)
    assert task.status == TaskStatus.PENDING
