"""The worker against real things: a real queue (SQLite, or each backend with ``db``), the real executor and
nodes, and for the HTTP source the real server application over a real socket.

``Recorder`` is a test-only middleware appended to the real app: it notes when each request arrived (and can hold
some requests back, to make an overlap certain); ``RecordingExecutor`` notes when each run started and ended.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from visionatrix.db import migrate
from visionatrix.db.engine import create_engine
from visionatrix.executor.run import Executor, ExecutorSettings
from visionatrix.flows.catalog import FlowCatalog
from visionatrix.nodes.registry import NodeRegistry
from visionatrix.queue.events import TaskEvents
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.models import FileRecord, TaskStatus
from visionatrix.server.app import create_app
from visionatrix.server.services import Services
from visionatrix.storage.files import TaskStorage

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "flows" / "examples" / "sample.jpg"


def slow_graph(expand: int = 3000) -> dict[str, Any]:
    """About 0.3 s on a CPU at 3000; a different ``expand`` per task keeps the output cache out of the way."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "image.jpg"}},
        "2": {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "red"}},
        "3": {"class_type": "GrowMask", "inputs": {"mask": ["2", 0], "expand": expand, "tapered_corners": True}},
        "4": {"class_type": "MaskToImage", "inputs": {"mask": ["3", 0]}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "slow"}},
    }


@pytest.fixture(scope="session")
def registry() -> NodeRegistry:
    registry = NodeRegistry()
    registry.load_packs([], core_dir=ROOT / "comfy_nodes")
    return registry


class RecordingExecutor(Executor):
    """The real executor; ``runs[task_id] = (started, ended)`` on ``time.monotonic()``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.runs: dict[int, tuple[float, float]] = {}

    async def execute(self, prompt: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return await super().execute(prompt, **kwargs)
        finally:
            self.runs[int(kwargs["prompt_id"])] = (started, time.monotonic())


class MeasuredExecutor(RecordingExecutor):
    """The real executor on the CPU, whose results carry ``peak_vram_bytes`` as a run on a GPU reports it."""

    PEAK = 12345

    async def execute(self, prompt: Any, **kwargs: Any) -> Any:
        result = await super().execute(prompt, **kwargs)
        result.peak_vram_bytes = self.PEAK
        return result


@pytest.fixture
def measured_executor(tmp_path: Path, registry: NodeRegistry) -> Any:
    executor = MeasuredExecutor(registry, ExecutorSettings(device="cpu", temp_dir=tmp_path / "executor_temp"))
    yield executor
    executor.close()


@pytest.fixture
def executor(tmp_path: Path, registry: NodeRegistry) -> Any:
    executor = RecordingExecutor(registry, ExecutorSettings(device="cpu", temp_dir=tmp_path / "executor_temp"))
    yield executor
    executor.close()


async def queue_task(queue: TaskQueue, storage: TaskStorage, flow: str, graph: dict[str, Any]) -> int:
    """A pending task whose input ``image.jpg`` is stored (file and row), as the server's task creation does."""
    data = SAMPLE.read_bytes()
    record = FileRecord(kind="input", name="image.jpg", node_id=None, size_bytes=len(data),
                        sha256=hashlib.sha256(data).hexdigest(), param="image")
    (task_id,) = await queue.create(flow, graph, {}, files=[record])
    shutil.copyfile(SAMPLE, storage.input_dir(task_id) / "image.jpg")
    return task_id


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def held_by(queue: TaskQueue, worker_id: str) -> list[int]:
    """The tasks leased to ``worker_id``: running, or claimed (held ahead, not started yet), by id."""
    held = [t for status in (TaskStatus.CLAIMED, TaskStatus.RUNNING)
            for t in await queue.list(status=status, limit=1000) if t.worker_id == worker_id]
    return sorted(t.id for t in held)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Recorder:
    """Notes ``(monotonic time, method, path)`` of each request when it arrives; ``hold[(method, prefix)]`` delays
    matching requests by that many seconds before they are handled, ``hold_reply[(method, path)]`` delays the
    reply of that exact path after it was handled (a reply still on its way)."""

    requests: list[tuple[float, str, str]] = field(default_factory=list)
    hold: dict[tuple[str, str], float] = field(default_factory=dict)
    hold_reply: dict[tuple[str, str], float] = field(default_factory=dict)

    def first(self, method: str, path_part: str) -> float:
        return next(t for t, m, p in self.requests if m == method and path_part in p)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((time.monotonic(), request.method, request.path))
        for (method, prefix), delay_s in self.hold.items():
            if request.method == method and request.path.startswith(prefix):
                await asyncio.sleep(delay_s)
        response = await handler(request)
        await asyncio.sleep(self.hold_reply.get((request.method, request.path), 0.0))
        return response


@dataclass
class Server:
    services: Services
    recorder: Recorder
    port: int
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = create_app(self.services)
        app.middlewares.append(self.recorder.middleware)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@asynccontextmanager
async def server_services(tmp_path: Path, registry: NodeRegistry, *, worker_auth: str | None = None,
                          lease_s: float = 10.0) -> AsyncIterator[Services]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'server.db'}")
    await migrate.upgrade(engine)
    events = TaskEvents()
    queue = TaskQueue(engine, lease_s=lease_s, events=events)
    try:
        yield Services(queue=queue, storage=TaskStorage(tmp_path / "server_files", max_upload_bytes=50_000_000),
                       flows=FlowCatalog([ROOT / "flows"], tmp_path / "user_flows", registry.object_info()),
                       registry=registry, events=events, max_image_pixels=10_000_000, version="test",
                       worker_auth=worker_auth)
    finally:
        await queue.aclose()
        await engine.dispose()


@asynccontextmanager
async def running_server(tmp_path: Path, registry: NodeRegistry, **options: Any) -> AsyncIterator[Server]:
    async with server_services(tmp_path, registry, **options) as services:
        server = Server(services, Recorder(), free_port())
        await server.start()
        try:
            yield server
        finally:
            await server.stop()
