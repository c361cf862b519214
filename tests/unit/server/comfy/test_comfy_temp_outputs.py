"""A task's temporary outputs (PreviewImage's images): run by the DEFAULT mode's in-process worker they are task
files of kind ``temp``, listed in ``/history`` and in ``executed``, served by ``/view?type=temp``, kept out of the
task's outputs, removed with the task and by the age limit, and hidden from other users."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from tests.unit.server.comfy.test_comfy_prompts import _post, _run_all
from tests.unit.server.comfy.test_comfy_socket import _messages
from tests.unit.server.signin_world import make_world
from visionatrix.cli.serve import sweep_old_temps
from visionatrix.server.services import Services

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def preview_prompt() -> dict[str, Any]:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 2, "color": 65280}},
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "kept"}}}


async def _run_preview(http: TestClient, services: Services, tmp_path: Path, client_id: str = "c") -> tuple[str, int]:
    status, reply = await _post(http, {"prompt": preview_prompt(), "client_id": client_id})
    assert status == 200, reply
    assert await _run_all(services, tmp_path) == 1
    [task] = (await (await http.get("/vapi/tasks")).json())["tasks"]
    assert task["status"] == "finished", task
    return reply["prompt_id"], task["id"]


async def test_preview_images_are_in_history_and_executed_and_served_by_view(
        http: TestClient, services: Services, tmp_path: Path) -> None:
    async with http.ws_connect("/ws?clientId=me") as ws:
        await ws.receive_json(timeout=5)
        prompt_id, task_id = await _run_preview(http, services, tmp_path, "me")
        seen = await _messages(ws, "done")
    executed = {m["data"]["node"]: m["data"]["output"] for m in seen if m["type"] == "executed"}
    previews = executed["2"]["images"]
    assert len(previews) == 2 and {p["type"] for p in previews} == {"temp"}
    assert {p["subfolder"] for p in previews} == {str(task_id)}
    assert [p["type"] for p in executed["3"]["images"]] == ["output", "output"]

    entry = (await (await http.get(f"/history/{prompt_id}")).json())[prompt_id]
    assert entry["outputs"]["2"]["images"] == previews
    task = await services.queue.get(task_id)
    temps = {f.name: f for f in task.files if f.kind == "temp"}
    assert sorted(temps) == sorted(p["filename"] for p in previews)
    for ref in previews:
        response = await http.get("/view", params=ref)
        assert response.status == 200 and response.content_type == "image/png"
        body = await response.read()
        assert body.startswith(PNG_MAGIC) and hashlib.sha256(body).hexdigest() == temps[ref["filename"]].sha256
        assert temps[ref["filename"]].node_id == "2"
    # the same name as an output is not there: temp and output are different folders
    response = await http.get("/view", params={**previews[0], "type": "output"})
    assert response.status == 404


async def test_previews_are_not_among_the_tasks_outputs_and_go_with_the_task(
        http: TestClient, services: Services, tmp_path: Path) -> None:
    _, task_id = await _run_preview(http, services, tmp_path)
    view = await (await http.get(f"/vapi/tasks/{task_id}")).json()
    assert [f["kind"] for f in view["outputs"]] == ["output", "output"]
    assert all(f["name"].startswith("kept") for f in view["outputs"])
    assert [f["kind"] for f in view["previews"]] == ["temp", "temp"]  # listed apart, for whoever asks
    for preview in view["previews"]:
        response = await http.get(preview["url"])
        assert response.status == 200 and hashlib.sha256(await response.read()).hexdigest() == preview["sha256"]
    folder = services.storage.root / "temp" / str(task_id)
    assert len(list(folder.iterdir())) == 2
    assert not (services.storage.root / "output" / str(task_id) / ".temp").exists()
    ref = {"filename": next(folder.iterdir()).name, "subfolder": str(task_id), "type": "temp"}
    assert (await http.delete(f"/vapi/tasks/{task_id}")).status in (200, 204)
    assert not folder.exists()
    assert (await http.get("/view", params=ref)).status == 404


async def test_old_previews_are_swept_rows_and_files_and_recent_ones_stay(
        http: TestClient, services: Services, tmp_path: Path) -> None:
    prompt_id, task_id = await _run_preview(http, services, tmp_path)
    folder = services.storage.root / "temp" / str(task_id)
    assert await sweep_old_temps(services.queue, services.storage, max_age_s=3600) == 0
    assert folder.is_dir() and any(f.kind == "temp" for f in (await services.queue.get(task_id)).files)

    assert await sweep_old_temps(services.queue, services.storage, max_age_s=0) == 1
    task = await services.queue.get(task_id)
    assert not folder.exists() and [f.kind for f in task.files] == ["output", "output"]
    entry = (await (await http.get(f"/history/{prompt_id}")).json())[prompt_id]
    assert "2" not in entry["outputs"] and len(entry["outputs"]["3"]["images"]) == 2
    assert (services.storage.root / "output" / str(task_id)).is_dir()  # the outputs stay


async def test_another_users_preview_is_not_found(aiohttp_client: Any, services: Services) -> None:
    world = await make_world(aiohttp_client, services)
    task_id = world.prompt_tasks["alice"]
    folder = services.storage.temp_dir(task_id)
    (folder / "ComfyUI_temp_abcde_00001_.png").write_bytes(PNG_MAGIC + b"preview")
    ref = {"filename": "ComfyUI_temp_abcde_00001_.png", "subfolder": str(task_id), "type": "temp"}
    mine = await world.client.get("/view", params=ref, headers=world.headers("alice_session"))
    assert mine.status == 200 and (await mine.read()).startswith(PNG_MAGIC)
    theirs = await world.client.get("/view", params=ref, headers=world.headers("bob_api"))
    assert theirs.status == 404
    admin = await world.client.get("/view", params=ref, headers=world.headers("root_session"))
    assert admin.status == 200
    escape = await world.client.get("/view", params={**ref, "subfolder": f"{task_id}/../1"},
                                    headers=world.headers("alice_session"))
    assert escape.status == 403
