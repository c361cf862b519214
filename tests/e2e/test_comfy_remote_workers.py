"""A ComfyUI client's prompt runs on a worker in another process — Database-FS (it writes the database; the server
only sees the rows) and Server mode (over HTTP) — and its progress reaches the client's socket."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.cluster import Server, WorkerProcess, scratch_database

PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0}},
          "2": {"class_type": "E2ESleep", "inputs": {"image": ["1", 0], "seconds": 0.6}},
          "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "remote"}}}


async def _follow(url: str) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{url}/ws?clientId=remote-client") as ws:
        await ws.receive_json(timeout=10)
        async with session.post(f"{url}/prompt", json={"prompt": PROMPT, "client_id": "remote-client"}) as reply:
            assert reply.status == 200, await reply.text()
            prompt_id = (await reply.json())["prompt_id"]
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(60):
            async for message in ws:
                if message.type is aiohttp.WSMsgType.BINARY:
                    seen.append({"type": "binary", "data": {"frame": message.data}})
                    continue
                data = message.json()
                seen.append(data)
                if data["type"] == "executing" and data["data"]["node"] is None:
                    break
        async with session.get(f"{url}/history/{prompt_id}") as reply:
            history = await reply.json()
    return prompt_id, seen, history


@pytest.mark.parametrize("mode", ["database", "http"])
def test_a_prompt_run_by_a_worker_elsewhere_reaches_the_clients_socket(tmp_path: Path, mode: str) -> None:
    with scratch_database("sqlite", tmp_path) as database_uri:
        server = Server(tmp_path / "server", database_uri).wait_ready()
        if mode == "database":
            worker = WorkerProcess("remote", tmp_path / "remote", flows=["e2e_red"], database_uri=database_uri,
                                   tasks_files=server.tasks_files)
        else:
            worker = WorkerProcess("remote", tmp_path / "remote", flows=["e2e_red"], server=server)
        try:
            worker.wait_registered(server)
            prompt_id, seen, history = asyncio.run(_follow(server.url))
        finally:
            assert worker.stop() == 0
            server.stop()
    previews = [m["data"]["frame"] for m in seen if m["type"] == "binary"]
    seen = [m for m in seen if m["type"] != "binary"]
    if mode == "http":  # E2ESleep shows a preview at each step; the worker sends the newest per progress write
        assert previews and all(frame[:8] == b"\0\0\0\x01\0\0\0\x01" for frame in previews), previews[:1]
    kinds = [m["type"] for m in seen if m["type"] != "status"]
    assert kinds[:2] == ["execution_start", "execution_cached"], kinds
    assert "executed" in kinds and kinds[-2:] == ["execution_success", "executing"], kinds
    assert all(m["data"].get("prompt_id") in (None, prompt_id) for m in seen if m["type"] != "status")
    entry = history[prompt_id]
    assert entry["status"]["completed"] is True and entry["outputs"]["3"]["images"]
    task_id = entry["outputs"]["3"]["images"][0]["subfolder"]
    assert (server.tasks_files / "output" / task_id / entry["outputs"]["3"]["images"][0]["filename"]).is_file()
