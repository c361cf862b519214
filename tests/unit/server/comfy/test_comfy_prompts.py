"""ComfyUI's ``prompt``, ``queue``, ``interrupt`` and ``history`` on our queue: a prompt becomes a task any worker
with its node types takes, shows in our task API, runs on a real worker and executor, and reads back in ComfyUI's
shapes; bad prompts are refused as ComfyUI refuses them, with nothing queued."""

from __future__ import annotations

import asyncio
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.unit.server.helpers import SAMPLE
from visionatrix.executor.run import Executor, ExecutorSettings
from visionatrix.server.services import Services
from visionatrix.worker.daemon import Worker, WorkerOptions
from visionatrix.worker.db_source import DatabaseSource


def solid_prompt(size: int = 8) -> dict[str, Any]:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": 1,
                                                         "color": 255}, "_meta": {"title": "canvas"}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "solid"}}}


def load_prompt(name: str) -> dict[str, Any]:
    return {"1": {"class_type": "LoadImage", "inputs": {"image": name}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "copy"}}}


async def _post(http: TestClient, body: Any, path: str = "/prompt") -> tuple[int, Any]:
    response = await http.post(path, json=body)
    return response.status, await response.json()


async def _run_all(services: Services, tmp_path: Path) -> int:
    """Run every claimable task on a real in-process worker (burst)."""
    executor = Executor(services.registry, ExecutorSettings(device="cpu", temp_dir=tmp_path / "executor"))
    try:
        source = DatabaseSource(services.queue, services.storage, node_types=services.registry.object_info())
        options = WorkerOptions(worker_id="w", installed_flows=[], claim_wait_s=0, retry_s=0.01)
        return await Worker(source, executor, options).run(asyncio.Event(), burst=True)
    finally:
        executor.close()


async def test_a_prompt_is_queued_run_by_a_worker_and_read_back_in_comfyuis_shapes(
        http: TestClient, services: Services, tmp_path: Path) -> None:
    status, reply = await _post(http, {"prompt": solid_prompt(), "client_id": "c1"})
    assert status == 200, reply
    prompt_id = reply["prompt_id"]
    assert str(uuid.UUID(prompt_id)) == prompt_id and reply["node_errors"] == {} and isinstance(reply["number"], int)
    assert (await (await http.get("/api/prompt")).json()) == {"exec_info": {"queue_remaining": 1}}
    queue = await (await http.get("/queue")).json()
    assert queue["queue_running"] == [] and [item[1] for item in queue["queue_pending"]] == [prompt_id]
    assert queue["queue_pending"][0][3]["client_id"] == "c1" and queue["queue_pending"][0][4] == ["2"]
    assert await (await http.get(f"/history/{prompt_id}")).json() == {}  # not finished yet
    ours = await (await http.get("/vapi/tasks")).json()
    [task] = ours["tasks"]
    assert task["flow"].startswith("@graph:")

    assert await _run_all(services, tmp_path) == 1
    history = await (await http.get(f"/api/history/{prompt_id}")).json()
    entry = history[prompt_id]
    assert entry["status"]["status_str"] == "success" and entry["status"]["completed"] is True
    assert [m[0] for m in entry["status"]["messages"]] == ["execution_start", "execution_cached", "execution_success"]
    [image] = entry["outputs"]["2"]["images"]
    assert image["type"] == "output" and image["subfolder"] == str(task["id"])
    assert (services.storage.root / "output" / image["subfolder"] / image["filename"]).is_file()
    assert prompt_id in await (await http.get("/history")).json()
    assert (await (await http.get("/prompt")).json())["exec_info"]["queue_remaining"] == 0


async def test_a_prompt_with_an_uploaded_image_carries_it_into_the_task(
        http: TestClient, services: Services, tmp_path: Path) -> None:
    folder = services.storage.root / "comfy" / "input" / "pasted"
    folder.mkdir(parents=True)
    shutil.copyfile(SAMPLE, folder / "photo.jpg")
    status, reply = await _post(http, {"prompt": load_prompt("pasted/photo.jpg")})
    assert status == 200, reply
    task = (await (await http.get("/vapi/tasks")).json())["tasks"][0]
    assert (services.storage.root / "input" / str(task["id"]) / "pasted" / "photo.jpg").is_file()
    assert await _run_all(services, tmp_path) == 1
    entry = (await (await http.get(f"/history/{reply['prompt_id']}")).json())[reply["prompt_id"]]
    assert entry["status"]["completed"] is True


@pytest.mark.parametrize(("body", "kind"), [
    ({"no": "prompt"}, "no_prompt"),
    ([1, 2], "no_prompt"),
    ({"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}}, None),
    ({"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1,
                                                              "color": 0}}}}, "prompt_no_outputs"),
    ({"prompt": solid_prompt(), "prompt_id": "not-a-uuid"}, "invalid_prompt_id"),
    ({"prompt": solid_prompt(), "prompt_id": str(uuid.uuid4()).upper()}, "invalid_prompt_id"),
    ({"prompt": load_prompt("missing.png")}, None),
    ({"prompt": load_prompt("../../vix.db")}, None),
    ({"prompt": "text"}, "invalid_prompt"),
])
async def test_a_bad_prompt_is_400_and_queues_nothing(http: TestClient, body: Any, kind: str | None) -> None:
    status, reply = await _post(http, body)
    assert status == 400, reply
    assert set(reply) == {"error", "node_errors"}
    if kind is not None:
        assert reply["error"]["type"] == kind
    else:
        assert reply["node_errors"], reply
    assert (await (await http.get("/vapi/tasks")).json())["tasks"] == []


async def test_an_unknown_node_type_is_named_in_node_errors(http: TestClient) -> None:
    prompt = {**solid_prompt(), "3": {"class_type": "NoSuchNode", "inputs": {"image": ["1", 0]}}}
    status, reply = await _post(http, {"prompt": prompt})
    assert status == 200, "the prompt still has a valid output (ComfyUI accepts it)"
    status, reply = await _post(http, {"prompt": {"3": {"class_type": "NoSuchNode", "inputs": {}}}})
    assert status == 400 and reply["error"]["type"] in ("missing_node_type", "prompt_no_outputs")


async def test_malformed_json_is_400(http: TestClient) -> None:
    response = await http.post("/prompt", data=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert (await response.json())["error"]["type"] == "invalid_json"


async def test_a_given_prompt_id_is_kept_and_cannot_be_reused(http: TestClient) -> None:
    prompt_id = str(uuid.uuid4())
    status, reply = await _post(http, {"prompt": solid_prompt(), "prompt_id": prompt_id, "number": 7})
    assert status == 200 and reply["prompt_id"] == prompt_id and reply["number"] == 7
    status, reply = await _post(http, {"prompt": solid_prompt(), "prompt_id": prompt_id})
    assert status == 400 and reply["error"]["type"] == "duplicate_prompt_id"


async def test_queue_delete_and_clear_remove_pending_prompts(http: TestClient) -> None:
    ids = [(await _post(http, {"prompt": solid_prompt(8 + i)}))[1]["prompt_id"] for i in range(3)]
    assert (await http.post("/queue", json={"delete": [ids[0], "unknown"]})).status == 200
    pending = [item[1] for item in (await (await http.get("/queue")).json())["queue_pending"]]
    assert pending == ids[1:]
    assert (await http.post("/api/queue", json={"clear": True})).status == 200
    assert (await (await http.get("/queue")).json())["queue_pending"] == []
    assert (await http.post("/queue", data=b"garbage")).status == 400  # not read as "nothing given" on a guess


async def test_interrupt_cancels_the_running_prompt(http: TestClient, services: Services) -> None:
    prompt_id = (await _post(http, {"prompt": solid_prompt()}))[1]["prompt_id"]
    claimed = await services.queue.claim_next("w", [(await (await http.get("/vapi/tasks")).json())["tasks"][0]["flow"]])
    assert claimed is not None
    await services.queue.mark_started(claimed.id, claimed.lease_token)
    assert (await http.post("/interrupt", json={"prompt_id": str(uuid.uuid4())})).status == 200
    assert not (await services.queue.get(claimed.id)).cancel_requested
    assert (await http.post("/interrupt", json={"prompt_id": prompt_id})).status == 200
    assert (await services.queue.get(claimed.id)).cancel_requested


async def test_history_clear_deletes_finished_prompts(http: TestClient, services: Services, tmp_path: Path) -> None:
    prompt_id = (await _post(http, {"prompt": solid_prompt()}))[1]["prompt_id"]
    await _run_all(services, tmp_path)
    assert prompt_id in await (await http.get("/history?max_items=5")).json()
    assert (await http.post("/history", json={"delete": [prompt_id]})).status == 200
    assert await (await http.get("/history")).json() == {}
    assert (await (await http.get("/vapi/tasks")).json())["tasks"] == []


@pytest.mark.parametrize("path", ["/queue", "/history", "/interrupt", "/free"])
@pytest.mark.parametrize(("raw", "message"), [
    (b'{"clear": tr', "not valid JSON"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[1, 2]", "must be a JSON object, got list"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
])
async def test_malformed_bodies_are_400_and_change_nothing(http: TestClient, path: str, raw: bytes,
                                                           message: str) -> None:
    status, first = await _post(http, {"prompt": solid_prompt(8)})
    assert status == 200
    response = await http.post(path, data=raw, headers={"Content-Type": "application/json"})
    assert response.status == 400
    body = await response.json()
    assert body["error"]["type"] == "invalid_json" and message in body["error"]["message"]
    queue = await (await http.get("/queue")).json()
    assert [item[1] for item in queue["queue_pending"]] == [first["prompt_id"]]
    assert (await http.post(path)).status == 200  # an empty body still means "nothing given"
