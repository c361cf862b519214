"""``/vapi/models`` against a real server whose catalog points at a local model server: list with states and the
flows needing each model, install with ``model_progress`` events to ``installed``, cancel keeps the partial file,
remove, bad requests; and an admin's install/free commands reaching a worker's report."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.model_server import ModelServer, ServedFile
from visionatrix.client import VixClient
from visionatrix.flows.catalog import FlowCatalog
from visionatrix.models.catalog import ModelsCatalog
from visionatrix.models.download import DownloadProgress
from visionatrix.models.folders import ModelFolders
from visionatrix.models.hosts import policy_from_settings
from visionatrix.models.installer import ModelInstaller
from visionatrix.models.inventory import ModelInventory
from visionatrix.server.server_models import ServerModels
from visionatrix.server.services import Services

FAST = bytes(range(256)) * 2048  # 512 KiB
SLOW = bytes(reversed(range(256))) * 4096  # 1 MiB, served slowly


def _entry(url: str, data: bytes, filename: str) -> dict[str, Any]:
    return {"regexes": [{"input_value": f"^{filename}$"}], "url": url, "hash": hashlib.sha256(data).hexdigest(),
            "types": ["upscale_models"], "filename": filename, "file_size": len(data), "homepage": "https://x.test"}


def _flow(model_file: str) -> dict[str, Any]:
    """A flow whose only model input is ``model_file`` (an ``UpscaleModelLoader`` graph)."""
    return {
        "1": {"class_type": "VixUiWorkflowMetadata", "inputs": {"name": "needs_fast", "display_name": "Needs fast",
                                                                "description": "", "version": "1.0.0"}},
        "2": {"class_type": "LoadImage", "_meta": {"title": "input;Image;order=1;custom_id=image"},
              "inputs": {"image": ""}},
        "3": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": model_file}},
        "4": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["3", 0], "image": ["2", 0]}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "up"}},
    }


@pytest.fixture
async def model_server() -> AsyncIterator[ModelServer]:
    async with ModelServer({"/fast.pth": FAST, "/slow.pth": ServedFile(SLOW, delay_s=0.05, chunk_bytes=16 * 1024)}
                           ) as server:
        yield server


@pytest.fixture
async def store(services: Services, model_server: ModelServer, tmp_path: Path) -> AsyncIterator[ServerModels]:
    catalog = ModelsCatalog({"Fast": _entry(model_server.url("/fast.pth"), FAST, "fast.pth"),
                             "Slow": _entry(model_server.url("/slow.pth"), SLOW, "slow.pth")})
    folders = ModelFolders(tmp_path / "models")
    policy = policy_from_settings(["127.0.0.1"], catalog.hosts(), hf_token=None, civitai_token=None)

    def publish(progress: DownloadProgress) -> None:
        services.events.publish(progress.event())

    installer = ModelInstaller(folders, catalog, policy, max_concurrent=2, on_progress=publish)
    services.models = ServerModels(catalog, ModelInventory(folders, catalog, busy=installer.is_busy), installer)
    services.flows = FlowCatalog([], tmp_path / "user_flows", services.flows.object_info, models_catalog=catalog.raw)
    yield services.models
    await installer.aclose()


async def _wait_state(vix: VixClient, name: str, state: str, timeout_s: float = 20.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while True:
            (model,) = [m for m in await vix.list_models() if m["name"] == name]
            if model["state"] == state and (model["progress"] or {}).get("state") != "downloading":
                return model
            await asyncio.sleep(0.05)


async def test_models_are_listed_with_their_state_and_the_flows_needing_them(vix: VixClient, store: ServerModels
                                                                             ) -> None:
    await vix.upload_flow(_flow("fast.pth"))
    models = {m["name"]: m for m in await vix.list_models()}
    assert set(models) == {"Fast", "Slow"}
    assert models["Fast"]["state"] == "missing" and models["Fast"]["flows"] == ["needs_fast"]
    assert models["Fast"]["file_size"] == len(FAST) and models["Fast"]["folder"] == "upscale_models"
    assert models["Slow"]["flows"] == [] and models["Slow"]["progress"] is None
    assert [m["name"] for m in await vix.list_models(flow="needs_fast")] == ["Fast"]


async def test_a_flows_models_install_with_progress_events_and_the_flow_has_none_missing(
        vix: VixClient, store: ServerModels, tmp_path: Path) -> None:
    await vix.upload_flow(_flow("fast.pth"))
    assert (await vix.get_flow("needs_fast"))["models_missing"] == ["fast.pth"]
    seen: list[dict[str, Any]] = []

    async def watch() -> None:
        async for event in vix.events():
            if event["type"] == "model_progress":
                seen.append(event)
                if event["state"] in ("installed", "failed"):
                    return

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0.2)
    assert await vix.install_models(flow="needs_fast") == {"started": ["Fast"], "installed": []}
    await asyncio.wait_for(watcher, 20)
    assert seen[-1]["state"] == "installed" and seen[-1]["bytes_done"] == len(FAST), seen
    assert seen[-1]["worker_id"] is None
    path = tmp_path / "models" / "upscale_models" / "fast.pth"
    assert path.read_bytes() == FAST
    assert (await vix.get_flow("needs_fast"))["models_missing"] == []
    assert (await _wait_state(vix, "Fast", "installed"))["bytes_on_disk"] == len(FAST)
    assert await vix.install_models(["Fast"]) == {"started": [], "installed": ["Fast"]}


async def test_cancel_keeps_the_partial_file_and_remove_deletes_it(vix: VixClient, store: ServerModels,
                                                                   tmp_path: Path) -> None:
    assert (await vix.install_models(["Slow"]))["started"] == ["Slow"]
    part = tmp_path / "models" / "upscale_models" / "slow.pth.part"
    async with asyncio.timeout(10):  # bytes arrived (the part may hold them only once the writer's batch is full)
        while not ({m["name"]: m for m in await vix.list_models()}["Slow"]["progress"] or {}).get("bytes_done"):
            await asyncio.sleep(0.02)
    async with vix.session.delete(vix.url("/vapi/models/Slow")) as response:
        assert response.status == 409, "a model that downloads is not removed"
    assert await vix.cancel_model_install("Slow") is True
    model = await _wait_state(vix, "Slow", "partial")
    assert model["progress"]["state"] == "cancelled" and 0 < model["bytes_on_disk"] < len(SLOW)
    await vix.remove_model("Slow")
    assert not part.exists()
    assert (await _wait_state(vix, "Slow", "missing"))["bytes_on_disk"] == 0


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"names": ["Fast", "Nope"]}, 404, "not_found"),
    ({"names": []}, 400, "invalid_request"),
    ({"names": ["Fast"], "flow": "x"}, 400, "invalid_request"),
    ({}, 400, "invalid_request"),
    ({"names": "Fast"}, 400, "invalid_request"),
    ({"flow": "no_such_flow"}, 404, "not_found"),
    ([1, 2], 400, "invalid_request"),
])
async def test_bad_install_requests_start_nothing(http: TestClient, store: ServerModels, body: Any, status: int,
                                                  code: str) -> None:
    response = await http.post("/vapi/models/install", data=json.dumps(body),
                               headers={"Content-Type": "application/json"})
    assert response.status == status and (await response.json())["error"] == code
    assert store.installer.progress() == {}


async def test_a_flow_needing_a_model_outside_the_catalog_cannot_be_installed(vix: VixClient, http: TestClient,
                                                                              store: ServerModels) -> None:
    await vix.upload_flow(_flow("unknown-model.pth"))
    response = await http.post("/vapi/models/install", json={"flow": "needs_fast"})
    body = await response.json()
    assert response.status == 400 and body["error"] == "invalid_params"
    assert "unknown-model.pth" in body["details"]["flow"]


async def test_unknown_models_are_404_for_cancel_and_remove(http: TestClient, store: ServerModels) -> None:
    assert (await http.post("/vapi/models/Nope/cancel")).status == 404
    assert (await http.delete("/vapi/models/Nope")).status == 404
    assert (await (await http.post("/vapi/models/Fast/cancel")).json()) == {"cancelled": False}


async def test_without_a_catalog_the_model_routes_are_404(http: TestClient) -> None:
    response = await http.get("/vapi/models")
    assert response.status == 404 and (await response.json())["error"] == "not_found"


async def test_admin_commands_reach_the_worker_with_its_next_report(vix: VixClient, http: TestClient,
                                                                    store: ServerModels) -> None:
    report = {"mode": "WORKER_HTTP", "device": "cpu", "installed_flows": [], "current_task_id": None}
    assert (await http.post("/vapi/workers/w1/free")).status == 404, "a worker that never reported"
    assert (await http.put("/vapi/worker/workers/w1", json=report)).status == 200
    assert await vix.install_models_on_worker("w1", ["Fast"]) == {"worker_id": "w1", "queued": ["Fast"]}
    assert (await vix.free_worker("w1"))["queued"] == "free"
    answer = await (await http.put("/vapi/worker/workers/w1", json=report)).json()
    assert answer["commands"] == [{"type": "install", "names": ["Fast"]}, {"type": "free"}]
    answer = await (await http.put("/vapi/worker/workers/w1", json=report)).json()
    assert answer["commands"] == []


async def test_a_workers_reported_models_show_in_the_workers_list_and_as_events(vix: VixClient, http: TestClient,
                                                                                 store: ServerModels) -> None:
    progress = {"state": "downloading", "bytes_done": 10, "bytes_total": 100, "speed_bps": 5.0, "eta_s": 18.0,
                "error": None}
    models = {"present": ["Fast"], "loaded": [{"name": "fast.pth", "kind": "upscale", "bytes": 123,
                                                "where": "ram"}], "ram_bytes": 123, "vram_bytes": 0,
              "installing": {"Slow": progress}}
    report = {"mode": "WORKER_HTTP", "device": "cpu", "installed_flows": [], "current_task_id": None,
              "models": models}

    async def first_model_event() -> dict[str, Any]:
        async for event in vix.events():
            if event["type"] == "model_progress":
                return event
        raise AssertionError("the stream ended")

    watcher = asyncio.create_task(first_model_event())
    await asyncio.sleep(0.2)
    assert (await http.put("/vapi/worker/workers/w1", json=report)).status == 200
    event = await asyncio.wait_for(watcher, 10)
    assert event == {**progress, "type": "model_progress", "name": "Slow", "worker_id": "w1"}
    (worker,) = await vix.list_workers()
    assert worker["models"] == {**models, "installing": {"Slow": {**progress, "name": "Slow"}}}


@pytest.mark.parametrize("models", [
    "lots", {"present": "x"}, {"loaded": [{"name": "a", "kind": "b", "bytes": -1, "where": "ram"}]},
    {"loaded": [{"name": "a", "kind": "b", "bytes": 1, "where": "disk"}]},
    {"installing": {"a": {"state": "exploding", "bytes_done": 0}}}, {"extra": 1},
])
async def test_a_malformed_models_report_is_refused(http: TestClient, models: Any) -> None:
    report = {"mode": "WORKER_HTTP", "device": "cpu", "installed_flows": [], "current_task_id": None,
              "models": models}
    response = await http.put("/vapi/worker/workers/w1", json=report)
    body = await response.json()
    assert response.status == 400 and body["error"] == "invalid_request"
    assert any(key.startswith("models") for key in body["details"]), body
