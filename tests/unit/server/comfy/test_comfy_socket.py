"""ComfyUI's WebSocket: a client that queued a prompt gets its progress in ComfyUI's messages, in ComfyUI's order,
whether the worker reports through the server or writes the database directly."""

from __future__ import annotations

import asyncio
import json
import struct
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from tests.unit.server.comfy.test_comfy_prompts import _post, _run_all, solid_prompt
from visionatrix.server.services import Services


async def _messages(ws: aiohttp.ClientWebSocketResponse, until: str, timeout_s: float = 20) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout_s):
        async for message in ws:
            data = message.json()
            seen.append(data)
            if data["type"] == until or (until == "done" and data["type"] == "executing"
                                         and data["data"]["node"] is None):
                return seen
    return seen


async def test_connect_says_status_with_the_sid_and_answers_feature_flags(http: TestClient) -> None:
    async with http.ws_connect("/ws?clientId=abc") as ws:
        first = await ws.receive_json(timeout=5)
        assert first == {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "abc"}}
        await ws.send_json({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        flags = await ws.receive_json(timeout=5)
        assert flags["type"] == "feature_flags" and "max_upload_size" in flags["data"]
    async with http.ws_connect("/api/ws") as ws:
        assert (await ws.receive_json(timeout=5))["data"]["sid"]  # a sid is made up when none is given


async def test_the_client_that_queued_a_prompt_gets_its_run_in_comfyuis_order(
        http: TestClient, services: Services, tmp_path: Path) -> None:
    async with http.ws_connect("/ws?clientId=me") as mine, http.ws_connect("/ws?clientId=other") as other:
        await mine.receive_json(timeout=5)
        await other.receive_json(timeout=5)
        prompt_id = (await _post(http, {"prompt": solid_prompt(), "client_id": "me"}))[1]["prompt_id"]
        assert await _run_all(services, tmp_path) == 1  # the worker writes the database; the server looks
        seen = await _messages(mine, "done")
        kinds = [m["type"] for m in seen if m["type"] != "status"]
        assert kinds[:2] == ["execution_start", "execution_cached"]
        assert kinds[-3:] == ["executed", "execution_success", "executing"]
        executed = next(m["data"] for m in seen if m["type"] == "executed")
        assert executed["node"] == "2" and executed["prompt_id"] == prompt_id
        assert executed["output"]["images"][0]["type"] == "output"
        statuses = [m["data"]["status"]["exec_info"]["queue_remaining"] for m in seen if m["type"] == "status"]
        assert statuses and statuses[-1] == 0
        history = await (await http.get(f"/history/{prompt_id}")).json()
        assert history[prompt_id]["status"]["completed"] is True  # complete by the time executing{null} came
        others = await _messages(other, "status", timeout_s=5)
        assert all(m["type"] == "status" for m in others), "another client got this prompt's events"


async def test_a_failed_prompt_is_an_execution_error_naming_the_node(
        http: TestClient, services: Services, tmp_path: Path) -> None:
    prompt = {"1": {"class_type": "LoadImage", "inputs": {"image": "gone.png"}},
              "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    folder = services.storage.root / "comfy" / "input"
    folder.mkdir(parents=True)
    (folder / "gone.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    async with http.ws_connect("/ws?clientId=me") as ws:
        await ws.receive_json(timeout=5)
        status, reply = await _post(http, {"prompt": prompt, "client_id": "me"})
        if status != 200:  # validation already refuses the broken image: that is the ComfyUI behaviour too
            assert reply["node_errors"]
            return
        await _run_all(services, tmp_path)
        seen = await _messages(ws, "done")
        error = next(m["data"] for m in seen if m["type"] == "execution_error")
        assert error["prompt_id"] == reply["prompt_id"] and error["node_id"] == "1"
        assert error["node_type"] == "LoadImage" and error["exception_message"]


async def test_running_nodes_and_progress_are_executing_progress_state_and_progress(
        http: TestClient, services: Services) -> None:
    async with http.ws_connect("/ws?clientId=me") as ws:
        await ws.receive_json(timeout=5)
        prompt_id = (await _post(http, {"prompt": solid_prompt(), "client_id": "me"}))[1]["prompt_id"]
        flow = (await (await http.get("/vapi/tasks")).json())["tasks"][0]["flow"]
        task = await services.queue.claim_next("w", [flow])
        assert task is not None
        await services.queue.report_progress(task.id, task.lease_token, progress=40, current_node="1")
        first = await _messages(ws, "progress")
        await services.queue.report_progress(task.id, task.lease_token, progress=80, current_node="2")
        second = await _messages(ws, "progress")
        await services.queue.mark_finished(task.id, task.lease_token, timings={}, outputs=[])
        last = await _messages(ws, "done")
    kinds = [m["type"] for m in first if m["type"] != "status"]
    assert kinds == ["execution_start", "execution_cached", "executing", "progress_state", "progress"]
    assert first[-1]["data"] == {"value": 40, "max": 100, "prompt_id": prompt_id, "node": "1"}
    state = next(m["data"] for m in second if m["type"] == "progress_state")
    assert state["nodes"]["1"]["state"] == "finished" and state["nodes"]["2"]["state"] == "running"
    assert state["nodes"]["2"]["value"] == 80
    final = next(m["data"] for m in last if m["type"] == "progress_state")
    assert final["nodes"]["2"]["state"] == "finished"
    assert [m["type"] for m in last if m["type"] != "status"][-2:] == ["execution_success", "executing"]


async def test_a_preview_reaches_the_client_as_a_binary_frame_of_the_kind_it_asked_for(
        http: TestClient, services: Services) -> None:
    image = b"\xff\xd8\xff fake jpeg"
    async with http.ws_connect("/ws?clientId=new") as modern, http.ws_connect("/ws?clientId=old") as legacy:
        for ws, flags in ((modern, {"supports_preview_metadata": True}), (legacy, {})):
            await ws.receive_json(timeout=5)
            await ws.send_json({"type": "feature_flags", "data": flags})
            assert (await ws.receive_json(timeout=5))["type"] == "feature_flags"
        for client, ws in (("new", modern), ("old", legacy)):
            prompt_id = (await _post(http, {"prompt": solid_prompt(8 if client == "new" else 9),
                                            "client_id": client}))[1]["prompt_id"]
            tasks = (await (await http.get("/vapi/tasks")).json())["tasks"]
            task = next(t for t in tasks if t["status"] == "pending")
            services.queue.publish_preview(task["id"], task["flow"], "1", image)
            async with asyncio.timeout(5):
                while True:
                    message = await ws.receive()
                    if message.type is aiohttp.WSMsgType.BINARY:
                        break
            frame = message.data
            if client == "new":
                kind, length = struct.unpack(">II", frame[:8])
                meta = json.loads(frame[8:8 + length])
                assert kind == 4 and meta["prompt_id"] == prompt_id and meta["node_id"] == "1"
                assert meta["image_type"] == "image/jpeg" and frame[8 + length:] == image
            else:
                assert struct.unpack(">II", frame[:8]) == (1, 1) and frame[8:] == image


async def test_the_events_of_flow_tasks_cost_the_socket_no_database_look(
        http: TestClient, services: Services, monkeypatch: Any) -> None:
    """Only a prompt's task (a node-set flow) concerns ComfyUI's socket: a flow's tasks, however many, must not
    each cost a query (the socket once looked every new task up, and remembered every id it was not a prompt)."""
    looked: list[int] = []
    real_by_task = services.prompts.by_task  # type: ignore[union-attr]

    async def by_task(task_id: int) -> Any:
        looked.append(task_id)
        return await real_by_task(task_id)

    monkeypatch.setattr(services.prompts, "by_task", by_task)
    async with http.ws_connect("/ws?clientId=me") as ws:
        await ws.receive_json(timeout=5)
        task_ids = await services.queue.create("web_resize_sharpen", {"1": {"class_type": "X", "inputs": {}}}, {},
                                               count=5)
        await services.queue.cancel(task_ids[0])
        await asyncio.sleep(0.2)  # the socket's event loop turn
        assert looked == []
        prompt_id = (await _post(http, {"prompt": solid_prompt(), "client_id": "me"}))[1]["prompt_id"]
        async with asyncio.timeout(5):
            while not looked:
                await asyncio.sleep(0.02)
        assert prompt_id and all(task_id not in task_ids for task_id in looked)
