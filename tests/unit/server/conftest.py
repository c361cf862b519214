"""A real server for the API tests: SQLite in tmp_path (migrated), real storage, the real node registry and the
bundled flows, served over a real socket; ``vix`` is the public client talking to it, ``http`` a raw client for
requests the public client would never send."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.unit.server.helpers import ROOT
from visionatrix.client import VixClient
from visionatrix.db import migrate
from visionatrix.db.engine import create_engine
from visionatrix.flows.catalog import FlowCatalog
from visionatrix.nodes.registry import NodeRegistry
from visionatrix.queue.events import TaskEvents
from visionatrix.queue.manager import TaskQueue
from visionatrix.server.app import create_app
from visionatrix.server.services import Services
from visionatrix.storage.files import TaskStorage

MAX_UPLOAD_BYTES = 200_000
MAX_IMAGE_PIXELS = 1_000_000


@pytest.fixture(scope="session")
def registry() -> NodeRegistry:
    registry = NodeRegistry()
    registry.load_packs([], core_dir=ROOT / "comfy_nodes")
    assert not registry.failures, registry.failures
    return registry


@pytest.fixture(scope="session")
def object_info(registry: NodeRegistry) -> dict[str, Any]:
    return registry.object_info()


@pytest.fixture
async def services(tmp_path: Path, registry: NodeRegistry, object_info: dict[str, Any]) -> AsyncIterator[Services]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'vix.db'}")
    await migrate.upgrade(engine)
    events = TaskEvents()
    try:
        yield Services(
            queue=TaskQueue(engine, events=events),
            storage=TaskStorage(tmp_path / "files", max_upload_bytes=MAX_UPLOAD_BYTES),
            flows=FlowCatalog([ROOT / "flows"], tmp_path / "user_flows", object_info),
            registry=registry,
            events=events,
            max_image_pixels=MAX_IMAGE_PIXELS,
            version="9.9.9-test",
            web_dir=ROOT / "web",
            models_dir=tmp_path / "models",
            user_dir=tmp_path / "user",
        )
    finally:
        await engine.dispose()


@pytest.fixture
async def server(aiohttp_server: Any, services: Services) -> AsyncIterator[TestServer]:
    """Closed here, before ``services`` disposes the engine: the app's background work (the ComfyUI socket's
    translation) must not open connections on a disposed engine."""
    served: TestServer = await aiohttp_server(create_app(services))
    yield served
    await served.close()


@pytest.fixture
async def vix(server: TestServer) -> AsyncIterator[VixClient]:
    async with VixClient(str(server.make_url("/")), timeout_s=10) as client:
        yield client


@pytest.fixture
async def http(aiohttp_client: Any, server: TestServer) -> TestClient:
    return await aiohttp_client(server)
