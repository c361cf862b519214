"""Hostile bodies, form fields and query values on ComfyUI's routes: a 400 (415 for a web page's body that is not
typed JSON) in each route's error shape, never a 500, nothing queued or written. ComfyUI's API scripts keep
working: they send their JSON untyped (``requests``) or form-urlencoded (``urllib``), and the editor sends its
settings as ``text/plain``."""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.unit.server.comfy.test_comfy_files import form, png
from tests.unit.server.comfy.test_comfy_prompts import solid_prompt
from tests.unit.server.helpers import staging_leftovers
from tests.unit.server.test_request_limits import BAD_JSON
from visionatrix.server.comfy.paths import ComfyFolders
from visionatrix.server.services import Services

JSON = {"Content-Type": "application/json"}
ROUTES = [("POST", "/prompt"), ("POST", "/api/prompt"), ("POST", "/queue"), ("POST", "/history"),
          ("POST", "/interrupt"), ("POST", "/free"), ("POST", "/api/jobs/cancel"),
          ("PATCH", "/internal/logs/subscribe"), ("POST", "/settings"), ("POST", "/api/settings/Comfy.X")]


def _message(body: Any) -> str:
    """The refusal's text in any of the shapes these routes answer with (ComfyUI's, ours, the jobs routes')."""
    return json.dumps(body)


async def _nothing_done(http: TestClient, services: Services) -> None:
    assert await services.queue.list(limit=10) == []
    assert staging_leftovers(services) == []
    assert await (await http.get("/api/settings")).json() == {}


@pytest.mark.parametrize(("raw", "problem"), BAD_JSON)
async def test_a_hostile_json_body_is_400_naming_the_problem_on_every_comfy_route(
        http: TestClient, services: Services, raw: bytes, problem: str) -> None:
    raw = raw.replace(b'"flow"', b'"prompt"').replace(b'"count"', b'"prompt"')
    for method, path in ROUTES:
        response = await http.request(method, path, data=raw, headers=JSON)
        body = await response.json()
        assert response.status == 400, (path, body)
        assert "invalid_json" in _message(body) or path == "/api/jobs/cancel", (path, body)
        assert problem in _message(body), (path, body)
    await _nothing_done(http, services)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
async def test_a_web_page_must_type_its_json_but_a_script_need_not(http: TestClient, services: Services,
                                                                 content_type: str | None) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    page = {**headers, "Origin": str(http.make_url("")).rstrip("/")}  # same origin: the Origin guard lets it by
    body = json.dumps({"prompt": solid_prompt()}).encode()
    response = await http.post("/prompt", data=body, headers=page, skip_auto_headers=["Content-Type"])
    reply = await response.json()
    assert response.status == 415 and reply["error"]["type"] == "unsupported_media_type", reply
    assert "application/json" in reply["error"]["message"]
    for path in ("/queue", "/history", "/interrupt", "/free"):
        response = await http.post(path, data=b'{"clear": true}', headers=page, skip_auto_headers=["Content-Type"])
        assert response.status == 415, path
    assert (await http.post("/api/jobs/cancel", data=b'{"job_ids": []}', headers=page,
                            skip_auto_headers=["Content-Type"])).status == 415
    assert await services.queue.list(limit=10) == []
    # the same bodies from a script (no Origin): requests sends none, urllib form-urlencoded
    response = await http.post("/prompt", data=body, headers=headers, skip_auto_headers=["Content-Type"])
    assert response.status == 200, await response.text()
    assert (await http.post("/queue", data=b'{"clear": true}', headers=headers,
                            skip_auto_headers=["Content-Type"])).status == 200
    assert await services.queue.list(limit=10) == []


async def test_the_editor_stores_settings_as_text_plain_and_empty_bodies_need_no_type(
        http: TestClient, services: Services) -> None:
    page = {"Origin": str(http.make_url("")).rstrip("/"), "Content-Type": "text/plain;charset=UTF-8"}
    assert (await http.post("/api/settings", data=b'{"Comfy.A": 1}', headers=page)).status == 200
    assert (await http.post("/api/settings/Comfy.B", data=b"[1, 2]", headers=page)).status == 200
    assert await (await http.get("/api/settings")).json() == {"Comfy.A": 1, "Comfy.B": [1, 2]}
    page["Content-Type"] = "application/x-www-form-urlencoded"
    assert (await http.post("/api/settings", data=b'{"Comfy.C": 1}', headers=page)).status == 415
    for path in ("/queue", "/history", "/interrupt", "/free"):
        response = await http.post(path, data=b"", headers={"Origin": page["Origin"]},
                                   skip_auto_headers=["Content-Type"])
        assert response.status == 200, path


@pytest.mark.parametrize(("disposition", "value"), [
    (b'form-data; name="ima\x00ge"; filename="a.png"', png()),
    (b'form-data; name="image"; filename="a\x00.png"', png()),
    (b"form-data; name=\"image\"; filename*=UTF-8''a%00.png", png()),
    (b'form-data; name="sub\x01folder"', b"x"),
    (b'form-data; name="type"; filename="\x7f"', b"input"),
])
async def test_a_control_character_in_an_upload_part_header_is_400(http: TestClient, services: Services,
                                                                   disposition: bytes, value: bytes) -> None:
    data = b"--B\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + value + b"\r\n--B--\r\n"
    for route in ("/upload/image", "/upload/mask"):
        response = await http.post(route, data=data, headers={"Content-Type": "multipart/form-data; boundary=B"})
        body = await response.json()
        assert response.status == 400 and body["error"] == "invalid_multipart", body
    input_dir = ComfyFolders(services.storage.root).input_dir
    assert not input_dir.exists() or list(input_dir.iterdir()) == []
    assert staging_leftovers(services) == []


@pytest.mark.parametrize(("raw", "problem"), [(b'{"filename": ' * 70 + b"1" + b"}" * 70, "nested too deeply"),
                                              (b'{"filename": "a.png", "x": 1e999}', "too large for a float"),
                                              (b'{"filename": "\\udfff"}', "lone UTF-16 surrogate"),
                                              (b'{"filename": "a.png", "n": ' + b"1" * 5000 + b"}", "300 digits")])
async def test_upload_masks_original_ref_is_read_by_the_same_rules(http: TestClient, services: Services,
                                                                    raw: bytes, problem: str) -> None:
    response = await http.post("/upload/mask", data=form(png(), original_ref=raw.decode("utf-8")))
    body = await response.json()
    assert response.status == 400 and body["error"] == "invalid_original_ref" and problem in body["message"], body
    assert staging_leftovers(services) == []


@pytest.mark.parametrize("query", ["max_items=-1", "max_items=abc", f"max_items={10**30}", "max_items=" + "9" * 5000,
                                   "offset=" + "9" * 5000, "offset=1.5", f"offset={2**63}"])
async def test_history_query_values_that_are_not_numbers_in_range_are_400(http: TestClient, query: str) -> None:
    response = await http.get(f"/history?{query}")
    body = await response.json()
    assert response.status == 400 and body["error"]["type"] == "invalid_query", body


async def test_a_huge_max_items_is_taken_as_the_page_size(http: TestClient) -> None:
    for query in (f"max_items={2**63 - 1}", "max_items=5&offset=-1", f"offset={2**62}"):
        response = await http.get(f"/history?{query}")
        assert response.status == 200 and await response.json() == {}, query


@pytest.mark.parametrize("query", ["limit=" + "9" * 5000, f"offset={10**30}", "limit=-1", "limit=\u00b2"])
async def test_queue_and_jobs_paging_values_out_of_range_are_400(http: TestClient, query: str) -> None:
    assert (await http.get(f"/queue?{query}")).status == 400
    assert (await http.get(f"/api/jobs?{query}")).status == 400


def _prompt_of(count: int) -> dict[str, Any]:
    return {str(i): {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}
            for i in range(count)}


async def test_a_prompt_over_vix_max_graph_nodes_is_refused_before_validation(http: TestClient,
                                                                             services: Services) -> None:
    limit = services.security.max_graph_nodes
    big = io.BytesIO(json.dumps({"prompt": _prompt_of(100_000)}).encode())  # a stream: no client-side warning
    response = await http.post("/prompt", data=big, headers=JSON)
    body = await response.json()
    assert response.status == 400 and body["error"]["type"] == "too_many_nodes", body
    assert f"100000 nodes; at most {limit}" in body["error"]["details"]
    services.security = dataclasses.replace(services.security, max_graph_nodes=2)
    assert (await http.post("/prompt", json={"prompt": solid_prompt()})).status == 200  # 2 nodes: at the limit
    graph = {**solid_prompt(), "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}
    response = await http.post("/prompt", json={"prompt": graph})
    assert response.status == 400 and (await response.json())["error"]["type"] == "too_many_nodes"
    assert len(await services.queue.list(limit=10)) == 1


@pytest.mark.parametrize("text", ["[" * 300_000, '{"type": "feature_flags", "data": {"x": 1e999}}',
                                  '{"type": "feature_flags", "data": ' * 70 + "1" + "}" * 70])
async def test_a_hostile_first_socket_message_is_ignored_and_the_socket_answers(http: TestClient, text: str) -> None:
    async with http.ws_connect("/ws?clientId=abc") as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "status"
        await ws.send_str(text)
        reply = await ws.receive_json(timeout=5)
        assert reply["type"] == "feature_flags" and "max_upload_size" in reply["data"]
