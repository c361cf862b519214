"""The worker protocol (``/vapi/worker/...``) against a real server and a real SQLite queue: claim and its
long-poll, input downloads, heartbeats, output uploads, the outcome calls, worker reports and the admin's
``allowed_flows``."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from tests.unit.server.conftest import MAX_UPLOAD_BYTES
from tests.unit.server.helpers import SAMPLE, staging_leftovers
from tests.unit.server.test_flows_api import solid_flow
from visionatrix.client import VixClient
from visionatrix.server.app import create_app
from visionatrix.server.services import Services

FLOW = "web_resize_sharpen"
WORKER = "/vapi/worker"


async def _queued(vix: VixClient, count: int = 1) -> list[int]:
    return await vix.create_task(FLOW, files={"image": SAMPLE}, count=count)


async def _claim(http: TestClient, *, worker_id: str = "w1", flows: tuple[str, ...] = (FLOW,),
                 wait_s: float = 0, **extra: Any) -> dict[str, Any] | None:
    response = await http.post(f"{WORKER}/claim", json={"worker_id": worker_id, "installed_flows": list(flows),
                                                        "wait_s": wait_s, **extra})
    assert response.status == 200, await response.text()
    return (await response.json())["task"]


async def _claimed(http: TestClient, vix: VixClient) -> dict[str, Any]:
    """A task claimed over the worker API and started (``POST .../start``): running."""
    [task_id] = await _queued(vix)
    task = await _claim(http)
    assert task is not None and task["id"] == task_id
    started = await http.post(f"{WORKER}/tasks/{task_id}/start", json={"lease_token": task["lease_token"]})
    assert started.status == 200, await started.text()
    return task


async def _upload(http: TestClient, task: dict[str, Any], name: str, data: Any, *,
                  sha256: str | None = None, token: str | None = None) -> aiohttp.ClientResponse:
    headers = {"X-Vix-Lease": token or task["lease_token"]}
    if sha256 is not None:
        headers["X-Vix-SHA256"] = sha256
    return await http.put(URL(f"{WORKER}/tasks/{task['id']}/outputs/{name}", encoded=True), data=data,
                          headers=headers)


async def _post(http: TestClient, task: dict[str, Any], action: str, **body: Any) -> aiohttp.ClientResponse:
    return await http.post(f"{WORKER}/tasks/{task['id']}/{action}",
                           json={"lease_token": task["lease_token"], **body})


def _output_entries(services: Services, task_id: int) -> list[str]:
    """Every entry (hidden temporary files included) under the task's output folder."""
    folder = services.storage.root / "output" / str(task_id)
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- claim -------------------------------------------------------------------------------------------------------


async def test_a_claim_returns_the_task_its_lease_and_its_inputs_with_urls(http: TestClient, vix: VixClient) -> None:
    await _queued(vix)
    task = await _claim(http)
    assert task is not None
    assert task["flow"] == FLOW and task["attempt"] == 1 and task["params"] == {}
    assert task["graph"] and len(task["lease_token"]) >= 16
    assert datetime.fromisoformat(task["lease_expires_at"]) > datetime.now(UTC)
    [image] = task["inputs"]
    assert image["size_bytes"] == SAMPLE.stat().st_size and image["sha256"] == _sha(SAMPLE.read_bytes())
    assert image["url"] == f"{WORKER}/tasks/{task['id']}/inputs/{image['name']}"
    response = await http.get(image["url"], headers={"X-Vix-Lease": task["lease_token"]})
    assert response.status == 200
    assert await response.read() == SAMPLE.read_bytes()
    assert response.headers["X-Vix-SHA256"] == image["sha256"]
    assert int(response.headers["Content-Length"]) == image["size_bytes"]
    shown = await vix.get_task(task["id"])
    assert (shown["status"], shown["worker_id"], shown["started_at"]) == ("claimed", "w1", None)
    started = await http.post(f"/vapi/worker/tasks/{task['id']}/start", json={"lease_token": task["lease_token"]})
    assert started.status == 200 and await started.json() == {"cancel_requested": False}
    shown = await vix.get_task(task["id"])
    assert shown["status"] == "running" and shown["started_at"] is not None


async def test_an_input_download_needs_the_lease_and_a_known_name(http: TestClient, vix: VixClient) -> None:
    task = await _claimed(http, vix)
    url = task["inputs"][0]["url"]
    response = await http.get(url)
    assert response.status == 400
    assert "X-Vix-Lease" in (await response.json())["details"]
    response = await http.get(url, headers={"X-Vix-Lease": "0" * 32})
    assert response.status == 409 and (await response.json())["error"] == "lease_lost"
    response = await http.get(f"{WORKER}/tasks/{task['id']}/inputs/other.png",
                              headers={"X-Vix-Lease": task["lease_token"]})
    assert response.status == 404 and (await response.json())["error"] == "not_found"


async def test_a_long_poll_claim_wakes_up_when_a_task_is_queued(http: TestClient, vix: VixClient) -> None:
    started = time.monotonic()
    waiting = asyncio.create_task(_claim(http, wait_s=20))
    await asyncio.sleep(0.3)
    assert not waiting.done()
    [task_id] = await _queued(vix)
    task = await asyncio.wait_for(waiting, 10)
    assert task is not None and task["id"] == task_id
    assert time.monotonic() - started < 10  # woken by the event, not by the end of wait_s


async def test_a_long_poll_wakes_up_for_a_restarted_task(http: TestClient, vix: VixClient) -> None:
    [task_id] = await _queued(vix)
    await vix.cancel_task(task_id)
    waiting = asyncio.create_task(_claim(http, wait_s=20))
    await asyncio.sleep(0.3)
    await vix.restart_task(task_id)
    task = await asyncio.wait_for(waiting, 10)
    assert task is not None and task["id"] == task_id


async def test_a_long_poll_answers_null_once_wait_s_ran_out(http: TestClient, vix: VixClient) -> None:
    await vix.upload_flow(solid_flow())
    started = time.monotonic()
    waiting = asyncio.create_task(_claim(http, flows=("solid",), wait_s=0.5))
    await asyncio.sleep(0.1)
    await _queued(vix)  # a task of a flow this worker does not have
    assert await waiting is None
    assert time.monotonic() - started >= 0.5


async def test_a_waiting_claim_answers_at_once_when_the_server_stops(aiohttp_server: Any,
                                                                     services: Services) -> None:
    server: TestServer = await aiohttp_server(create_app(services))
    async with aiohttp.ClientSession() as session:

        async def claim() -> Any:
            async with session.post(server.make_url(f"{WORKER}/claim"),
                                    json={"worker_id": "w1", "installed_flows": [FLOW], "wait_s": 30}) as reply:
                return await reply.json()

        waiting = asyncio.create_task(claim())
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await server.close()
        assert await asyncio.wait_for(waiting, 10) == {"task": None}
        assert time.monotonic() - started < 10


@pytest.fixture
async def production_server(services: Services) -> AsyncIterator[str]:
    """The app served as ``serve`` serves it: a handler is not cancelled when its client leaves (the test
    server cancels it, which would hide what a long-poll does about a worker that left)."""
    runner = web.AppRunner(create_app(services), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_a_claim_whose_worker_left_takes_no_task(production_server: str, vix: VixClient,
                                                      http: TestClient) -> None:
    async with aiohttp.ClientSession() as session:
        waiting = asyncio.create_task(session.post(f"{production_server}{WORKER}/claim", json={
            "worker_id": "gone", "installed_flows": [FLOW], "wait_s": 20}))
        await asyncio.sleep(0.3)
        waiting.cancel()  # the worker gives up: its connection closes
        with pytest.raises(asyncio.CancelledError):
            await waiting
    await asyncio.sleep(0.2)
    [task_id] = await _queued(vix)
    await asyncio.sleep(0.3)
    assert (await vix.get_task(task_id))["status"] == "pending"
    task = await _claim(http)
    assert task is not None and task["id"] == task_id


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"worker_id": "w1", "installed_flows": [FLOW], "wait_s": "soon"}, {"wait_s"}),
        ({"worker_id": "w1", "installed_flows": [FLOW], "wait_s": 31}, {"wait_s"}),
        ({"worker_id": "w1", "installed_flows": [FLOW], "wait_s": True}, {"wait_s"}),
        ({"worker_id": "w1", "installed_flows": FLOW}, {"installed_flows"}),
        ({"worker_id": "w1", "installed_flows": [FLOW, 3]}, {"installed_flows"}),
        ({"worker_id": "", "installed_flows": []}, {"worker_id"}),
        ({"worker_id": "w" * 256, "installed_flows": []}, {"worker_id"}),
        ({"installed_flows": [], "last_flow": 7}, {"worker_id", "last_flow"}),
        ({"worker_id": "w1", "installed_flows": [], "flows": []}, {"flows"}),
    ],
)
async def test_a_bad_claim_is_400_naming_each_field(http: TestClient, body: dict[str, Any], fields: set[str]) -> None:
    response = await http.post(f"{WORKER}/claim", json=body)
    assert response.status == 400
    reply = await response.json()
    assert reply["error"] == "invalid_request" and set(reply["details"]) == fields


async def test_a_claim_body_that_is_not_an_object_is_400(http: TestClient) -> None:
    response = await http.post(f"{WORKER}/claim", json=[1])
    assert response.status == 400 and (await response.json())["error"] == "invalid_request"


# -- allowed flows -----------------------------------------------------------------------------------------------


async def _report(http: TestClient, worker_id: str = "w1", **body: Any) -> aiohttp.ClientResponse:
    return await http.put(f"{WORKER}/workers/{worker_id}", json={
        "mode": "WORKER_HTTP", "device": "cuda:0", "installed_flows": [FLOW, "solid"], "current_task_id": None,
        **body})


async def _allow(http: TestClient, worker_id: str, flows: Any) -> aiohttp.ClientResponse:
    return await http.put(f"/vapi/workers/{worker_id}/allowed_flows", json={"flows": flows})


async def test_a_claim_takes_only_the_flows_an_admin_allows(http: TestClient, vix: VixClient) -> None:
    await vix.upload_flow(solid_flow())
    assert (await _report(http)).status == 200
    [task_id] = await _queued(vix)
    response = await _allow(http, "w1", ["solid"])
    assert response.status == 200
    assert (await response.json())["allowed_flows"] == ["solid"]
    assert await _claim(http, flows=(FLOW, "solid")) is None
    assert (await (await _report(http)).json()) == {"allowed_flows": ["solid"], "commands": []}
    assert (await _allow(http, "w1", None)).status == 200
    task = await _claim(http, flows=(FLOW, "solid"))
    assert task is not None and task["id"] == task_id


async def test_the_admin_route_shows_the_worker_and_refuses_unknown_ones_and_bad_bodies(http: TestClient) -> None:
    await _report(http, "gpu-1")
    response = await _allow(http, "gpu-1", [FLOW])
    worker = await response.json()
    assert worker["worker_id"] == "gpu-1" and worker["allowed_flows"] == [FLOW]
    assert worker["installed_flows"] == [FLOW, "solid"] and worker["mode"] == "WORKER_HTTP"
    listed = await (await http.get("/vapi/workers")).json()
    assert listed["workers"][0]["allowed_flows"] == [FLOW]
    response = await _allow(http, "nobody", [FLOW])
    assert response.status == 404 and (await response.json())["details"] == {"kind": "worker", "id": "nobody"}
    for body, field in (({}, "flows"), ({"flows": "solid"}, "flows"), ({"flows": [], "extra": 1}, "extra"),
                        ({"flows": [""]}, "flows")):
        response = await http.put("/vapi/workers/gpu-1/allowed_flows", json=body)
        assert response.status == 400, body
        assert field in (await response.json())["details"], body


# -- worker reports ----------------------------------------------------------------------------------------------


async def test_a_worker_report_is_stored_with_the_servers_time(http: TestClient) -> None:
    before = datetime.now(UTC)
    response = await _report(http, "host:cuda:0", current_task_id=5)
    assert response.status == 200 and await response.json() == {"allowed_flows": None, "commands": []}
    [worker] = (await (await http.get("/vapi/workers")).json())["workers"]
    assert worker["worker_id"] == "host:cuda:0" and worker["device"] == "cuda:0" and worker["current_task_id"] == 5
    assert before <= datetime.fromisoformat(worker["last_seen_at"]) <= datetime.now(UTC)
    assert worker["allowed_flows"] is None
    assert worker["state"] == "busy" and worker["resources"] is None and worker["stopped_at"] is None


async def test_a_report_carries_the_workers_memory_and_its_last_one_says_it_stopped(http: TestClient) -> None:
    resources = {"device_name": "cuda:0 NVIDIA H200", "device_memory_total": 150 << 30,
                 "device_memory_free": 140 << 30, "ram_total": 128 << 30, "ram_free": None}
    assert (await _report(http, "gpu-1", resources=resources)).status == 200
    [worker] = (await (await http.get("/vapi/workers")).json())["workers"]
    assert worker["resources"] == resources and worker["state"] == "idle"
    assert (await _report(http, "gpu-1", resources=resources, stopping=True)).status == 200
    [worker] = (await (await http.get("/vapi/workers")).json())["workers"]
    assert worker["state"] == "offline" and worker["stopped_at"] is not None
    assert (await _report(http, "gpu-1")).status == 200, "a restarted worker is back"
    [worker] = (await (await http.get("/vapi/workers")).json())["workers"]
    assert worker["state"] == "idle" and worker["stopped_at"] is None and worker["resources"] is None


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"mode": "M" * 17}, {"mode"}),
        ({"device": None}, {"device"}),
        ({"device": "d" * 65}, {"device"}),
        ({"installed_flows": "all"}, {"installed_flows"}),
        ({"current_task_id": "5", "last_seen_at": "2000-01-01"}, {"current_task_id", "last_seen_at"}),
        ({"resources": [1]}, {"resources"}),
        ({"resources": {"ram_total": -1, "device_name": 3, "vram": 1}},
         {"resources.ram_total", "resources.device_name", "resources.vram"}),
        ({"resources": {"ram_free": True}, "stopping": "yes"}, {"resources.ram_free", "stopping"}),
    ],
)
async def test_a_bad_worker_report_is_400_naming_each_field(http: TestClient, body: dict[str, Any],
                                                             fields: set[str]) -> None:
    response = await _report(http, **body)
    assert response.status == 400
    assert set((await response.json())["details"]) == fields


# -- heartbeat ---------------------------------------------------------------------------------------------------


async def test_a_heartbeat_stores_progress_and_says_when_the_user_cancelled(http: TestClient,
                                                                          vix: VixClient) -> None:
    task = await _claimed(http, vix)
    response = await _post(http, task, "heartbeat", progress=40, current_node="6")
    assert response.status == 200 and await response.json() == {"cancel_requested": False}
    shown = await vix.get_task(task["id"])
    assert shown["progress"] == 40 and shown["current_node"] == "6"
    assert await (await _post(http, task, "heartbeat")).json() == {"cancel_requested": False}
    await vix.cancel_task(task["id"])
    assert await (await _post(http, task, "heartbeat")).json() == {"cancel_requested": True}
    response = await _post(http, task, "cancelled")
    assert response.status == 200 and await response.json() == {"status": "cancelled"}
    assert (await vix.get_task(task["id"]))["status"] == "cancelled"


async def test_a_bad_heartbeat_is_400(http: TestClient, vix: VixClient) -> None:
    task = await _claimed(http, vix)
    response = await _post(http, task, "heartbeat", progress=101)
    assert response.status == 400 and set((await response.json())["details"]) == {"progress"}
    response = await http.post(f"{WORKER}/tasks/{task['id']}/heartbeat", json={"progress": 5})
    assert response.status == 400 and set((await response.json())["details"]) == {"lease_token"}


# -- a stale lease -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["heartbeat", "finish", "fail", "cancelled", "release", "input", "output"])
async def test_a_stale_lease_token_is_409_on_every_lease_route(http: TestClient, vix: VixClient,
                                                              services: Services, route: str) -> None:
    task = await _claimed(http, vix)
    stale = {**task, "lease_token": "f" * 32}
    if route == "input":
        response = await http.get(task["inputs"][0]["url"], headers={"X-Vix-Lease": stale["lease_token"]})
    elif route == "output":
        response = await _upload(http, stale, "a.png", b"data")
    elif route == "fail":
        response = await _post(http, stale, route, message="boom")
    else:
        response = await _post(http, stale, route)
    assert response.status == 409
    body = await response.json()
    assert body["error"] == "lease_lost" and body["details"] == {"task_id": task["id"]}
    assert (await vix.get_task(task["id"]))["status"] == "running"
    assert _output_entries(services, task["id"]) == []


async def test_an_unknown_task_is_409_lease_lost(http: TestClient) -> None:
    response = await http.post(f"{WORKER}/tasks/4242/heartbeat", json={"lease_token": "a" * 32})
    assert response.status == 409 and (await response.json())["error"] == "lease_lost"


# -- outputs and finish ------------------------------------------------------------------------------------------


async def test_uploaded_outputs_finish_the_task_and_download_through_the_tasks_route(
        http: TestClient, vix: VixClient, services: Services) -> None:
    task = await _claimed(http, vix)
    first, second = b"png bytes" * 100, b"second image"
    response = await _upload(http, task, "web_00001_.png", first, sha256=_sha(first).upper())
    assert response.status == 201
    assert await response.json() == {"name": "web_00001_.png", "size_bytes": len(first), "sha256": _sha(first)}
    assert (await _upload(http, task, "sub/extra.png", second)).status == 201
    response = await _post(http, task, "finish", timings={"7": 0.5},
                           outputs=[{"name": "web_00001_.png", "node_id": "7"}, {"name": "sub/extra.png"}])
    assert response.status == 200 and await response.json() == {"status": "finished"}
    shown = await vix.get_task(task["id"])
    assert shown["status"] == "finished" and shown["timings"] == {"7": 0.5}
    outputs = {o["name"]: o for o in shown["outputs"]}
    assert set(outputs) == {"web_00001_.png", "sub/extra.png"}
    assert (outputs["web_00001_.png"]["size_bytes"], outputs["web_00001_.png"]["sha256"]) == (len(first), _sha(first))
    assert outputs["web_00001_.png"]["node_id"] == "7" and outputs["sub/extra.png"]["node_id"] is None
    for output, content in ((outputs["web_00001_.png"], first), (outputs["sub/extra.png"], second)):
        download = await http.get(output["url"])
        assert download.status == 200 and await download.read() == content
    assert staging_leftovers(services) == []


async def test_a_repeated_upload_replaces_the_file(http: TestClient, vix: VixClient, services: Services) -> None:
    task = await _claimed(http, vix)
    assert (await _upload(http, task, "out.png", b"first try, cut short")).status == 201
    assert (await _upload(http, task, "out.png", b"second")).status == 201
    assert _output_entries(services, task["id"]) == ["out.png"]
    assert (await _post(http, task, "finish", outputs=[{"name": "out.png", "node_id": "7"}])).status == 200
    [output] = (await vix.get_task(task["id"]))["outputs"]
    assert (output["size_bytes"], output["sha256"]) == (6, _sha(b"second"))


async def test_a_digest_mismatch_is_400_and_keeps_nothing(http: TestClient, vix: VixClient,
                                                          services: Services) -> None:
    task = await _claimed(http, vix)
    assert (await _upload(http, task, "kept.png", b"good")).status == 201
    response = await _upload(http, task, "kept.png", b"corrupted", sha256=_sha(b"good"))
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "digest_mismatch" and body["details"] == {"expected": _sha(b"good"),
                                                                     "actual": _sha(b"corrupted")}
    response = await _upload(http, task, "new.png", b"corrupted", sha256=_sha(b"other"))
    assert response.status == 400
    assert _output_entries(services, task["id"]) == ["kept.png"]
    assert (services.storage.output_dir(task["id"]) / "kept.png").read_bytes() == b"good"
    response = await _upload(http, task, "x.png", b"data", sha256="not-hex")
    assert response.status == 400 and set((await response.json())["details"]) == {"X-Vix-SHA256"}


async def _chunks(total: int) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield b"x" * min(65536, total - sent)
        sent += 65536


@pytest.mark.parametrize("chunked", [False, True])
async def test_an_oversized_upload_is_413_and_keeps_nothing(http: TestClient, vix: VixClient, services: Services,
                                                            chunked: bool) -> None:
    task = await _claimed(http, vix)
    size = MAX_UPLOAD_BYTES + 1
    response = await _upload(http, task, "big.png", _chunks(size) if chunked else b"x" * size)
    assert response.status == 413
    assert (await response.json())["error"] == "too_large"
    assert _output_entries(services, task["id"]) == [] and staging_leftovers(services) == []
    assert (await _upload(http, task, "fits.png", b"x" * MAX_UPLOAD_BYTES)).status == 201


@pytest.mark.parametrize("name", ["..%2Fescape.png", "%2E%2E", "%2Fetc%2Fpasswd", "a%5Cb.png", ".hidden",
                                  "a/b/c.png", "", "sub/..%2F..%2Fx.png", "a%00b"])
async def test_a_hostile_output_name_is_400(http: TestClient, vix: VixClient, services: Services,
                                            tmp_path: Path, name: str) -> None:
    task = await _claimed(http, vix)
    response = await _upload(http, task, name, b"data")
    assert response.status == 400, name
    body = await response.json()
    if name == "a%00b":  # a control character in the path is refused for every route before its handler
        assert body["error"] == "invalid_url"
    else:
        assert body["error"] == "invalid_request" and set(body["details"]) == {"name"}
    root = services.storage.root
    assert [p for p in root.rglob("*") if p.is_file() and p.relative_to(root).parts[0] != "input"] == []
    assert not [p for p in tmp_path.rglob("*") if p.name in ("escape.png", "x.png", "passwd", "c.png")]


async def test_finish_with_a_missing_output_is_400_naming_it(http: TestClient, vix: VixClient) -> None:
    task = await _claimed(http, vix)
    assert (await _upload(http, task, "there.png", b"data")).status == 201
    response = await _post(http, task, "finish", outputs=[{"name": "there.png", "node_id": "7"},
                                                          {"name": "missing.png", "node_id": "7"}])
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "missing_outputs" and body["details"] == {"missing": ["missing.png"]}
    assert "missing.png" in body["message"]
    assert (await vix.get_task(task["id"]))["status"] == "running"


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"outputs": [{"name": "../x.png"}]}, {"outputs[0].name"}),
        ({"outputs": [{"name": "/abs.png"}, {"name": "a\\b.png"}]}, {"outputs[0].name", "outputs[1].name"}),
        ({"outputs": [{"name": ""}]}, {"outputs[0].name"}),
        ({"outputs": [{"name": "a.png"}, {"name": "a.png"}]}, {"outputs[1].name"}),
        ({"outputs": [{"name": "a.png", "node": "7"}]}, {"outputs[0].node"}),
        ({"outputs": ["a.png"]}, {"outputs[0]"}),
        ({"outputs": {"a.png": "7"}}, {"outputs"}),
        ({"timings": {"7": -1}}, {"timings"}),
        ({"timings": [1]}, {"timings"}),
        ({"peak_vram_bytes": -1}, {"peak_vram_bytes"}),
        ({"peak_vram_bytes": 1.5}, {"peak_vram_bytes"}),
        ({"peak_vram_bytes": "12345"}, {"peak_vram_bytes"}),
        ({"peak_vram_bytes": True}, {"peak_vram_bytes"}),
        ({"peak_vram_bytes": 2**63 + 1}, {"peak_vram_bytes"}),
    ],
)
async def test_a_bad_finish_is_400_naming_each_problem(http: TestClient, vix: VixClient, body: dict[str, Any],
                                                       fields: set[str]) -> None:
    task = await _claimed(http, vix)
    response = await _post(http, task, "finish", **body)
    assert response.status == 400
    reply = await response.json()
    assert reply["error"] == "invalid_request" and set(reply["details"]) == fields
    assert (await vix.get_task(task["id"]))["status"] == "running"


async def test_finish_without_outputs_finishes_the_task(http: TestClient, vix: VixClient) -> None:
    task = await _claimed(http, vix)
    assert (await _post(http, task, "finish")).status == 200
    shown = await vix.get_task(task["id"])
    assert shown["status"] == "finished" and shown["outputs"] == []
    assert shown["peak_vram_bytes"] is None  # a CPU worker sends none


async def test_finish_and_fail_store_the_runs_gpu_memory_peak(http: TestClient, vix: VixClient) -> None:
    finished, failed, unmeasured = [await _claimed(http, vix) for _ in range(3)]
    assert (await _post(http, finished, "finish", peak_vram_bytes=12345)).status == 200
    assert (await _post(http, failed, "fail", message="out of memory", peak_vram_bytes=2**40)).status == 200
    assert (await _post(http, unmeasured, "fail", message="boom", peak_vram_bytes=None)).status == 200
    shown = {task["id"]: task["peak_vram_bytes"] for task in await vix.list_tasks()}
    assert shown == {finished["id"]: 12345, failed["id"]: 2**40, unmeasured["id"]: None}


@pytest.mark.parametrize("value", [-5, "big", 2**63, [1]])
async def test_a_fail_with_a_bad_peak_is_400_naming_it(http: TestClient, vix: VixClient, value: Any) -> None:
    task = await _claimed(http, vix)
    response = await _post(http, task, "fail", message="boom", peak_vram_bytes=value)
    assert response.status == 400
    reply = await response.json()
    assert set(reply["details"]) == {"peak_vram_bytes"} and "peak_vram_bytes" in reply["message"]
    assert (await vix.get_task(task["id"]))["status"] == "running"


# -- fail, cancelled, release ------------------------------------------------------------------------------------


async def test_fail_records_the_error(http: TestClient, vix: VixClient) -> None:
    task = await _claimed(http, vix)
    response = await _post(http, task, "fail", node_id="6", class_type="ImageSharpen", message="boom",
                           traceback="Traceback ...")
    assert response.status == 200 and await response.json() == {"status": "failed"}
    shown = await vix.get_task(task["id"])
    assert shown["status"] == "failed"
    assert shown["error"] == {"node_id": "6", "class_type": "ImageSharpen", "message": "boom"}


async def test_a_fail_without_a_message_is_400(http: TestClient, vix: VixClient) -> None:
    task = await _claimed(http, vix)
    response = await _post(http, task, "fail", node_id=6)
    assert response.status == 400
    assert set((await response.json())["details"]) == {"message", "node_id"}


async def test_release_puts_the_task_back_or_cancels_it_when_asked(http: TestClient, vix: VixClient) -> None:
    [first, second] = await _queued(vix, count=2)
    task = await _claim(http)
    assert task is not None and task["id"] == first
    response = await _post(http, task, "release")
    assert response.status == 200 and await response.json() == {"status": "pending"}
    shown = await vix.get_task(first)
    assert shown["status"] == "pending" and shown["attempt"] == 0
    task = await _claim(http)
    assert task is not None and task["id"] == first
    assert (await _post(http, task, "start")).status == 200  # running: its cancel is a request to the worker
    await vix.cancel_task(first)
    assert await (await _post(http, task, "release")).json() == {"status": "cancelled"}
    assert (await vix.get_task(first))["status"] == "cancelled"
    assert (await vix.get_task(second))["status"] == "pending"
