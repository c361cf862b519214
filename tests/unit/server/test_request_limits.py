"""Hostile bodies, form fields, query values and path ids on our own API (``/vapi``): each is a clear 400 (415 for a
body that is not typed JSON) naming the problem — never a 500 — and nothing is stored. Every case here answered
500 (or was taken) before the shared JSON reader (``visionatrix/server/jsonio.py``)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from tests.unit.server.helpers import staging_leftovers
from tests.unit.server.test_flows_api import solid_flow
from visionatrix.server.services import Services

DEEP = b"[" * 100_000 + b"]" * 100_000
BAD_JSON = [
    (DEEP, "nested too deeply"),
    (b'{"flow": ' + b"[" * 65 + b"]" * 65 + b"}", "nested too deeply"),
    (b'{"count": ' + b"7" * 5000 + b"}", "more than 300 digits"),
    (b'{"count": ' + b"7" * 301 + b"}", "more than 300 digits"),
    (b'{"count": 1e999}', "too large for a float"),
    (b'{"count": -1e999}', "too large for a float"),
    (b'{"count": NaN}', "NaN"),
    (b'{"count": Infinity}', "Infinity"),
    (b'{"flow": "\\ud800"}', "lone UTF-16 surrogate"),
    (b'{"flow": "\\udc00x"}', "lone UTF-16 surrogate"),
    (b'{"flow": "a\\u0000b"}', "NUL"),
    (b'{"flow": "caf\xe9"}', "not UTF-8"),
    (b'{"flow": "\xed\xa0\x80"}', "not UTF-8"),  # a surrogate encoded as UTF-8 bytes
]
JSON_ROUTES = [
    ("POST", "/vapi/flows"),
    ("POST", "/vapi/tasks"),
    ("POST", "/vapi/worker/claim"),
    ("POST", "/vapi/worker/claim/withdraw"),
    ("POST", "/vapi/worker/tasks/1/heartbeat"),
    ("POST", "/vapi/worker/tasks/1/finish"),
    ("PUT", "/vapi/worker/workers/w1"),
    ("PUT", "/vapi/workers/w1/allowed_flows"),
]
JSON = {"Content-Type": "application/json"}


async def _nothing_stored(services: Services) -> None:
    assert await services.queue.list(limit=10) == []
    assert staging_leftovers(services) == []
    assert not services.flows.user_dir.exists() or list(services.flows.user_dir.iterdir()) == []


@pytest.mark.parametrize(("raw", "problem"), BAD_JSON)
async def test_a_hostile_json_body_is_400_naming_the_problem_on_every_json_route(
        http: TestClient, services: Services, raw: bytes, problem: str) -> None:
    for method, path in JSON_ROUTES:
        response = await http.request(method, path, data=raw, headers=JSON)
        body = await response.json()
        assert response.status == 400, (path, body)
        assert body["error"] == "invalid_json" and problem in body["message"], (path, body)
    await _nothing_stored(services)


async def test_big_but_sane_numbers_and_paired_surrogates_still_read(http: TestClient, services: Services) -> None:
    flow = solid_flow()
    flow["manifest"]["display_name"] = "Solid \U0001f600"  # json.dumps escapes it as a surrogate pair
    response = await http.post("/vapi/flows", data=json.dumps(flow).encode(), headers=JSON)
    assert response.status == 201, await response.text()
    assert (await response.json())["display_name"] == flow["manifest"]["display_name"]
    response = await http.post("/vapi/tasks", data=b'{"flow": "solid", "params": {"width": 1.5e3}, "count": 1.0}',
                               headers={"Content-Type": "application/vnd.api+json"})
    assert response.status == 201, await response.text()
    response = await http.post("/vapi/tasks", data=b'{"flow": "solid", "count": ' + b"9" * 300 + b"}", headers=JSON)
    body = await response.json()  # read, then refused by the field's own range
    assert response.status == 400 and body["details"] == {"count": "a number of 300 digits is out of range: "
                                                                    "expected 1 to 100"}


@pytest.mark.parametrize("content_type", [None, "text/plain", "text/plain; charset=utf-8",
                                          "application/x-www-form-urlencoded", "application/octet-stream"])
async def test_a_json_route_refuses_a_body_not_typed_json_with_415(http: TestClient, services: Services,
                                                                   content_type: str | None) -> None:
    """A page of another site can POST text/plain, form-urlencoded or untyped bodies without asking first."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    body = json.dumps({"flow": "web_resize_sharpen"}).encode()
    for method, path in JSON_ROUTES:
        # skip_auto_headers: aiohttp would otherwise type a bytes body as application/octet-stream
        response = await http.request(method, path, data=body, headers=headers,
                                      skip_auto_headers=["Content-Type"])
        reply = await response.json()
        assert response.status == 415, (path, reply)
        assert reply["error"] == "unsupported_media_type" and "application/json" in reply["message"]
        assert reply["details"]["accepted"][0] == "application/json"
    await _nothing_stored(services)


async def test_an_empty_body_is_400_not_415(http: TestClient) -> None:
    response = await http.post("/vapi/worker/claim", data=b"", skip_auto_headers=["Content-Type"])
    assert response.status == 400 and (await response.json())["error"] == "invalid_json"


def _multipart(disposition: bytes, value: bytes = b"x", extra: bytes = b"") -> bytes:
    return (b"--B\r\nContent-Disposition: form-data; name=\"flow\"\r\n\r\nweb_resize_sharpen\r\n" + extra
            + b"--B\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + value + b"\r\n--B--\r\n")


@pytest.mark.parametrize("disposition", [
    b'form-data; name="a\x00b"',
    b'form-data; name="input_image"; filename="a\x00.png"',
    b'form-data; name="a\x01b"',
    b'form-data; name="input_image"; filename="a\x7f.png"',
    b"form-data; name=\"input_image\"; filename*=UTF-8''a%00b.png",
    b"form-data; name=\"input_image\"; filename*=UTF-8''a%0Ab.png",
    b'form-data; name="caf\xe9"',
])
async def test_a_control_character_in_a_part_header_is_400(http: TestClient, services: Services,
                                                           disposition: bytes) -> None:
    headers = {"Content-Type": "multipart/form-data; boundary=B"}
    for path in ("/vapi/tasks", "/vapi/flows"):
        response = await http.post(path, data=_multipart(disposition), headers=headers)
        body = await response.json()
        assert response.status == 400, (path, body)
        assert body["error"] == "invalid_multipart", (path, body)
    await _nothing_stored(services)


@pytest.mark.parametrize(("raw", "problem"), [(b'{"a": ' * 70 + b"1" + b"}" * 70, "nested too deeply"),
                                              (b'{"x": 1e999}', "too large for a float"),
                                              (b'{"x": "\\ud800"}', "lone UTF-16 surrogate"),
                                              (b'{"x": ' + b"1" * 5000 + b"}", "more than 300 digits")])
async def test_json_inside_a_form_field_is_read_by_the_same_rules(http: TestClient, services: Services,
                                                                  raw: bytes, problem: str) -> None:
    headers = {"Content-Type": "multipart/form-data; boundary=B"}
    for field in (b"params", b"webhook_headers"):
        data = _multipart(b'form-data; name="' + field + b'"', raw)
        response = await http.post("/vapi/tasks", data=data, headers=headers)
        body = await response.json()
        assert response.status == 400 and body["error"] == "invalid_request", body
        assert problem in body["details"][field.decode()], body
    file_part = b'form-data; name="file"; filename="flow.json"'
    response = await http.post("/vapi/flows", data=_multipart(file_part, raw), headers=headers)
    body = await response.json()
    assert response.status == 400 and body["error"] == "invalid_json" and problem in body["message"], body
    await _nothing_stored(services)


@pytest.mark.parametrize("query", ["limit=" + "9" * 5000, "limit=" + str(10**30), "offset=-1", "offset=abc",
                                   f"offset={2**63}", "limit=+-5", "limit=\u00b2", "limit=\u0663", "limit=1e3",
                                   "offset=" + "1" * 301])
async def test_numeric_query_values_out_of_range_or_not_numbers_are_400(http: TestClient, query: str) -> None:
    response = await http.get(f"/vapi/tasks?{query}")
    body = await response.json()
    assert response.status == 400 and body["error"] == "invalid_query", body
    assert len(body["message"]) < 300  # a 5000-digit value is not echoed whole


@pytest.mark.parametrize("task_id", ["9" * 5000, str(2**63), "0", "\u0663"])
async def test_a_task_id_that_cannot_exist_is_404(http: TestClient, task_id: str) -> None:
    for method, path in (("GET", f"/vapi/tasks/{task_id}"), ("POST", f"/vapi/tasks/{task_id}/cancel"),
                         ("POST", f"/vapi/worker/tasks/{task_id}/release")):
        response = await http.request(method, path, json={"lease_token": "x"})
        assert response.status == 404, (path, await response.text())
    response = await http.get(f"/vapi/events/stream?task_id={task_id}")  # a 400, not an empty stream
    assert response.status == 400 and (await response.json())["error"] == "invalid_query"


def _nodes(count: int) -> dict[str, Any]:
    return {str(i): {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}
            for i in range(count)}


async def test_a_flow_of_more_nodes_than_vix_max_graph_nodes_is_refused_before_any_work(
        http: TestClient, services: Services) -> None:
    services.security = dataclasses.replace(services.security, max_graph_nodes=2)
    flow = solid_flow()
    flow["graph"]["2"] = {"class_type": "EmptyImage", "inputs": {}}
    ui_workflow = {"nodes": [{"id": i, "type": "EmptyImage"} for i in range(2)], "links": [],
                   "definitions": {"subgraphs": [{"nodes": [{"id": 9, "type": "SaveImage"}]}]}}
    for body in (flow, _nodes(3), ui_workflow):
        response = await http.post("/vapi/flows", json=body)
        reply = await response.json()
        assert response.status == 400 and reply["error"] == "too_many_nodes", reply
        assert reply["details"] == {"nodes": 3, "limit": 2} and "VIX_MAX_GRAPH_NODES" in reply["message"]
        headers = {"Content-Type": "multipart/form-data; boundary=B"}
        form = (b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.json"\r\n\r\n'
                + json.dumps(body).encode() + b"\r\n--B--\r\n")
        response = await http.post("/vapi/flows", data=form, headers=headers)
        assert response.status == 400 and (await response.json())["error"] == "too_many_nodes"
    await _nothing_stored(services)
    services.security = dataclasses.replace(services.security, max_graph_nodes=3)
    assert (await http.post("/vapi/flows", json=flow)).status == 201  # 3 nodes: at the limit


@pytest.mark.parametrize(("method", "url"), [
    ("GET", "/vapi/tasks?flow=a%00"), ("GET", "/history/a%00b"), ("GET", "/api/jobs/a%00"),
    ("PUT", "/vapi/workers/a%00/allowed_flows"), ("GET", "/vapi/flows/a%0Ab"), ("GET", "/api/userdata?dir=a%1F"),
    ("GET", "/vapi/tasks?fl%00ow=x"), ("GET", "/view?filename=a%7F.png"),
])
async def test_a_control_character_in_the_path_or_query_is_400(http: TestClient, method: str, url: str) -> None:
    """PostgreSQL refuses a NUL in any string: such a value reaching a query was a 500."""
    response = await http.request(method, URL(url, encoded=True), json={"flows": None})
    body = await response.json()
    assert response.status == 400 and body["error"] == "invalid_url", body


async def test_ordinary_escapes_in_the_path_and_query_still_pass(http: TestClient) -> None:
    assert (await http.get(URL("/vapi/tasks?flow=caf%C3%A9+x%20y", encoded=True))).status == 200
    assert (await http.get(URL("/vapi/flows/caf%C3%A9", encoded=True))).status == 404
