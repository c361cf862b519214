"""The HTTP end-to-end scenario of ``bench_queue.py``: tasks created over real HTTP and run by claimers.

C HTTP clients (one aiohttp session each) POST ``/vapi/tasks`` to the real application on a real socket — parameter
binding, graph validation, the create transaction, the ``task_queued`` event — while C claimers on the app's own
queue (as the in-process worker and the server's side of HTTP workers are) take the tasks with ``claim_next`` and
finish them with ``mark_finished``, woken by the queue's events and polling otherwise. Measured: tasks per second
from the first request to the last finish, and p50/p95 of the time from the start of a task's POST to its finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from visionatrix.flows.catalog import FlowCatalog
from visionatrix.nodes.registry import NodeRegistry
from visionatrix.queue.events import TaskEvents
from visionatrix.queue.manager import TaskQueue
from visionatrix.server.app import create_app
from visionatrix.server.services import Services
from visionatrix.storage.files import TaskStorage

ROOT = Path(__file__).resolve().parent.parent
NOOP_FLOW = {
    "1": {"class_type": "VixUiWorkflowMetadata", "inputs": {
        "name": "bench_noop", "display_name": "Bench no-op", "description": "", "author": "", "homepage": "",
        "documentation": "", "license": "", "tags": "[]", "version": "1.0.0"}},
    "2": {"class_type": "VixUiRangeInt", "inputs": {
        "value": 8, "display_name": "Size", "optional": True, "advanced": False, "min": 1, "max": 64, "step": 1,
        "order": 1, "custom_id": "size"}},
    "3": {"class_type": "EmptyImage", "inputs": {"width": ["2", 0], "height": ["2", 0], "batch_size": 1,
                                                 "color": 0}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "noop"}},
}
_registry: NodeRegistry | None = None


def registry() -> NodeRegistry:
    global _registry
    if _registry is None:
        _registry = NodeRegistry()
        _registry.load_packs([], core_dir=ROOT / "comfy_nodes")
    return _registry


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile_ms(samples_s: list[float], q: float) -> float:
    ordered = sorted(samples_s)
    return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


async def scenario_http(ctx: Any) -> dict[str, Any]:
    """``ctx`` is ``bench_queue.Context``: ``engine()``, ``claimers``, ``tasks``, ``poll_s``."""
    total = min(ctx.tasks, 1000)
    events = TaskEvents()
    with tempfile.TemporaryDirectory(prefix="vix-bench-http-") as scratch:
        flows = FlowCatalog([], Path(scratch) / "flows", registry().object_info())
        flows.add(NOOP_FLOW)
        queue = TaskQueue(ctx.engine(), events=events)
        services = Services(queue=queue,
                            storage=TaskStorage(Path(scratch) / "files", max_upload_bytes=1 << 20), flows=flows,
                            registry=registry(), events=events, max_image_pixels=1 << 20, version="bench")
        runner = web.AppRunner(create_app(services), access_log=None)
        await runner.setup()
        port = _free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            return await _drive(f"http://127.0.0.1:{port}", ctx, queue, total)
        finally:
            await runner.cleanup()
            await queue.aclose()


async def _drive(base: str, ctx: Any, queue: TaskQueue, total: int) -> dict[str, Any]:
    requested_at: dict[int, float] = {}
    finished_at: dict[int, float] = {}
    wakeup = asyncio.Event()
    done = asyncio.Event()

    async def listen() -> None:
        assert queue.events is not None
        async for event in queue.events.subscribe():
            if event.get("type") == "task_queued":
                wakeup.set()

    async def client(count: int) -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(count):
                started = time.perf_counter()
                async with session.post(f"{base}/vapi/tasks", json={"flow": "bench_noop"}) as response:
                    if response.status != 201:
                        raise RuntimeError(f"create failed: {response.status} {await response.text()}")
                    (task_id,) = (await response.json())["task_ids"]
                requested_at[task_id] = started

    async def claimer(name: str) -> None:
        while not done.is_set():
            task = await queue.claim_next(name, ["bench_noop"])
            if task is None:
                wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wakeup.wait(), timeout=ctx.poll_s)
                continue
            await queue.mark_finished(task.id, task.lease_token, timings={}, outputs=[])
            finished_at[task.id] = time.perf_counter()
            if len(finished_at) >= total:
                done.set()

    listener = asyncio.create_task(listen())
    per_client = [total // ctx.claimers + (1 if i < total % ctx.claimers else 0) for i in range(ctx.claimers)]
    started = time.perf_counter()
    workers = [asyncio.create_task(claimer(f"bench-{i}")) for i in range(ctx.claimers)]
    await asyncio.gather(*(client(n) for n in per_client))
    await asyncio.wait_for(done.wait(), timeout=300)
    elapsed = time.perf_counter() - started
    await asyncio.gather(*workers)
    listener.cancel()
    latencies = [finished_at[t] - requested_at[t] for t in finished_at if t in requested_at]
    return {"tasks": total, "per_s": total / elapsed, "p50_ms": _percentile_ms(latencies, 0.5),
            "p95_ms": _percentile_ms(latencies, 0.95)}
