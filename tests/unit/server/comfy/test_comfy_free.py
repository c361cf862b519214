"""ComfyUI's ``POST /free`` (``server/comfy/queue_history.py``): asks each worker that is not offline to unload its
models, through the same command channel the admin's ``/vapi/workers/{id}/free`` uses."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

REPORT = {"mode": "WORKER_HTTP", "device": "cpu", "installed_flows": [], "current_task_id": None}


async def _commands(http: TestClient, worker_id: str) -> list[Any]:
    answer = await (await http.put(f"/vapi/worker/workers/{worker_id}", json=REPORT)).json()
    return answer["commands"]


@pytest.mark.parametrize("body", [{"unload_models": True}, {"free_memory": True},
                                  {"unload_models": True, "free_memory": True}])
async def test_free_reaches_every_reporting_worker_once(http: TestClient, body: dict[str, Any]) -> None:
    for worker_id in ("w1", "w2"):
        assert await _commands(http, worker_id) == []
    assert (await http.post("/free", json=body)).status == 200
    assert await _commands(http, "w1") == [{"type": "free"}]
    assert await _commands(http, "w2") == [{"type": "free"}]
    assert await _commands(http, "w1") == [], "a command is handed out once"


@pytest.mark.parametrize("body", [{}, {"unload_models": False}, {"something": True}])
async def test_a_body_asking_for_nothing_queues_nothing(http: TestClient, body: dict[str, Any]) -> None:
    assert await _commands(http, "w1") == []
    assert (await http.post("/free", json=body)).status == 200
    assert await _commands(http, "w1") == []
