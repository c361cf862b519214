"""The JSON bodies of the REST routes and of the worker protocol are pydantic models: the OpenAPI document's request
schemas are generated from them, and the limits the document states are the ones a request meets."""

from __future__ import annotations

import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from pydantic import BaseModel

from tests.unit.server.helpers import SAMPLE, staging_leftovers
from visionatrix.server import auth_models, request_models, worker_models
from visionatrix.server.openapi import document
from visionatrix.server.openapi_parts import model_schemas
from visionatrix.server.services import Services

HAND_WRITTEN = {("post", "/vapi/flows")}
"""JSON bodies no model describes: a flow upload is any graph or workflow."""
SCHEMA_KEYWORDS = {
    "type", "properties", "required", "additionalProperties", "items", "anyOf", "oneOf", "allOf", "$ref",
    "description", "title", "default", "enum", "const", "format", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems", "minProperties",
    "maxProperties", "examples", "deprecated", "readOnly", "writeOnly", "nullable", "discriminator"}
"""JSON Schema 2020-12 keywords as OpenAPI 3.1 uses them (anything else must be an ``x-`` extension)."""
TASK_FLOW = "web_resize_sharpen"


def _json_bodies(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    bodies = {}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                bodies[(method, path)] = content["application/json"]["schema"]
    return bodies


def _model_named(name: str) -> type[BaseModel]:
    model = next((getattr(module, name) for module in (request_models, worker_models, auth_models)
                  if hasattr(module, name)), None)
    assert isinstance(model, type) and issubclass(model, BaseModel), f"{name} is no pydantic model"
    return model


def test_every_json_body_is_the_schema_of_its_pydantic_model() -> None:
    doc = document("1")
    components = doc["components"]["schemas"]
    checked = set()
    for (method, path), schema in _json_bodies(doc).items():
        if (method, path) in HAND_WRITTEN:
            continue
        name = schema["$ref"].removeprefix("#/components/schemas/")
        model = _model_named(name)
        assert components[name] == model_schemas(model)[name], (method, path)
        assert components[name]["additionalProperties"] is False, f"{name} refuses unknown fields"
        checked.add(name)
    assert {model.__name__ for model in (*request_models.BODIES, *worker_models.BODIES)} <= checked
    assert {"TaskCreateRequest", "ModelInstallRequest", "AllowedFlowsRequest", "LoginRequest"} <= checked


def test_the_task_form_has_the_json_bodys_fields_and_limits() -> None:
    components = document("1")["components"]["schemas"]
    body, form = components["TaskCreateRequest"], components["TaskCreateForm"]
    assert set(form["properties"]) == set(body["properties"]) == set(request_models.TaskCreateRequest.model_fields)
    assert form["required"] == body["required"] == ["flow"]
    for name in ("count", "priority", "webhook_url"):
        assert form["properties"][name] == body["properties"][name]
    assert body["properties"]["count"]["maximum"] == request_models.MAX_COUNT


def _schema_problems(schema: Any, where: str) -> list[str]:
    if not isinstance(schema, dict):
        return [f"{where}: not a schema object"]
    problems = [f"{where}: {key!r} is no JSON Schema keyword" for key in schema
                if key not in SCHEMA_KEYWORDS and not key.startswith("x-")]
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            problems += _schema_problems(schema[key], f"{where}.{key}")
    for key in ("anyOf", "oneOf", "allOf"):
        for index, inner in enumerate(schema.get(key, [])):
            problems += _schema_problems(inner, f"{where}.{key}[{index}]")
    for name, inner in schema.get("properties", {}).items():
        problems += _schema_problems(inner, f"{where}.{name}")
    return problems


def test_every_component_schema_uses_only_json_schema_keywords() -> None:
    problems = [problem for name, schema in document("1")["components"]["schemas"].items()
                for problem in _schema_problems(schema, name)]
    assert problems == []


def test_a_generated_answer_model_refers_to_the_hand_written_views() -> None:
    components = document("1")["components"]["schemas"]
    assert components["TaskList"]["properties"]["tasks"]["items"] == {"$ref": "#/components/schemas/Task"}
    assert components["FlowList"]["properties"]["flows"]["items"] == {"$ref": "#/components/schemas/Flow"}


def _form(fields: dict[str, Any]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("flow", TASK_FLOW)
    for name, value in fields.items():
        form.add_field(name, value if isinstance(value, str) else json.dumps(value))
    form.add_field("image", SAMPLE.read_bytes(), filename="a.jpg")
    return form


async def _problems(http: TestClient, fields: dict[str, Any], *, as_form: bool) -> dict[str, str]:
    if as_form:
        response = await http.post("/vapi/tasks", data=_form(fields))
    else:
        response = await http.post("/vapi/tasks", json={"flow": TASK_FLOW, "params": {}, **fields})
    body = await response.json()
    assert response.status == 400 and body["error"] == "invalid_request", body
    return body["details"]


@pytest.mark.parametrize("fields", [
    {"count": "0", "priority": "101"},
    {"count": "many", "webhook_url": "ftp://example.com/"},
    {"webhook_url": "https://example.com/", "webhook_headers": {"Content-Length": "1"}},
    {"webhook_headers": {"X-A": "1"}},
])
async def test_a_form_and_a_json_body_meet_the_same_rules(http: TestClient, services: Services,
                                                          fields: dict[str, Any]) -> None:
    from_json = await _problems(http, fields, as_form=False)
    from_form = await _problems(http, fields, as_form=True)
    assert from_json == from_form and set(from_json) == set(fields) - ({"webhook_url"} if "webhook_headers" in fields
                                                                       else set())
    assert await services.queue.list() == [] and staging_leftovers(services) == []


async def test_the_limits_the_document_states_are_the_ones_enforced(http: TestClient, services: Services) -> None:
    body = (await (await http.get("/vapi/openapi.json")).json())["components"]["schemas"]["TaskCreateRequest"]
    priority = body["properties"]["priority"]
    for value in (priority["minimum"] - 1, priority["maximum"] + 1):
        assert set(await _problems(http, {"priority": value}, as_form=False)) == {"priority"}
    count = body["properties"]["count"]
    assert set(await _problems(http, {"count": count["maximum"] + 1}, as_form=True)) == {"count"}
    for value in (priority["minimum"], priority["maximum"]):
        response = await http.post("/vapi/tasks", data=_form({"priority": str(value)}))
        assert response.status == 201, await response.text()
    priorities = sorted(task.priority for task in await services.queue.list())
    assert priorities == [priority["minimum"], priority["maximum"]]


async def test_a_body_the_model_refuses_is_the_same_400_on_the_route(http: TestClient) -> None:
    body = {"flows": [""], "other": True}
    _, expected = request_models.check(request_models.AllowedFlowsRequest, body)
    response = await http.put("/vapi/workers/gpu-1/allowed_flows", json=body)
    answer = await response.json()
    assert response.status == 400 and answer["error"] == "invalid_request"
    assert answer["details"] == expected and set(expected) == {"flows", "other"}


# -- the worker protocol -------------------------------------------------------------------------------------------

WORKER_BODIES = [
    ("post", "/vapi/worker/claim", worker_models.ClaimRequest,
     {"worker_id": "", "installed_flows": [TASK_FLOW, 3], "wait_s": True, "flows": []}),
    ("post", "/vapi/worker/claim/withdraw", worker_models.WithdrawRequest, {"worker_id": None}),
    ("post", "/vapi/worker/tasks/1/heartbeat", worker_models.Heartbeat, {"progress": 101, "current_node": ""}),
    ("post", "/vapi/worker/tasks/1/finish", worker_models.FinishRequest,
     {"lease_token": "t", "outputs": [{"name": "../x.png"}, "a.png", {"name": "a", "node": 1}],
      "timings": {"7": -1}, "peak_vram_bytes": 2**63}),
    ("post", "/vapi/worker/tasks/1/fail", worker_models.FailRequest, {"lease_token": "t" * 65, "node_id": 6}),
    ("post", "/vapi/worker/tasks/1/cancelled", worker_models.LeaseRequest, {"lease_token": 1, "status": "x"}),
    ("post", "/vapi/worker/tasks/1/release", worker_models.LeaseRequest, {"lease_token": None, "x": 1}),
    ("put", "/vapi/worker/workers/w1", worker_models.WorkerReport,
     {"mode": "M" * 17, "device": None, "installed_flows": "all", "current_task_id": "5", "stopping": "yes",
      "resources": {"ram_total": -1, "vram": 1}, "models": {"loaded": [{"name": "a", "kind": "b", "bytes": -1,
                                                                         "where": "disk"}]}}),
]


@pytest.mark.parametrize(("method", "path", "model", "body"), WORKER_BODIES, ids=[row[1] for row in WORKER_BODIES])
async def test_a_worker_body_the_model_refuses_is_the_same_400_on_the_route(
        http: TestClient, method: str, path: str, model: type[request_models.RequestBody], body: dict[str, Any],
) -> None:
    _, expected = request_models.check(model, body)
    response = await http.request(method, path, json=body)
    answer = await response.json()
    assert response.status == 400 and answer["error"] == "invalid_request", answer
    assert answer["details"] == expected and len(expected) >= 2, expected


def test_the_worker_models_name_every_problem_as_the_protocol_always_did() -> None:
    _, report = request_models.check(worker_models.WorkerReport, WORKER_BODIES[-1][3])
    assert report == {
        "mode": "longer than 16 characters", "device": "must not be null",
        "installed_flows": "expected a list of flow names, got str",
        "current_task_id": f"expected a whole number from 1 to {2**63 - 1}, got '5'",
        "resources.ram_total": f"expected a whole number from 0 to {2**62}, got -1",
        "resources.vram": "unknown field", "stopping": "expected true or false, got str",
        "models.loaded.0.bytes": f"expected a whole number from 0 to {2**62}, got -1",
        "models.loaded.0.where": "expected 'ram' or 'vram'"}
    _, finish = request_models.check(worker_models.FinishRequest, WORKER_BODIES[3][3])
    assert set(finish) == {"outputs[0].name", "outputs[1]", "outputs[2].node", "timings", "peak_vram_bytes"}
    assert finish["outputs[2].node"] == "unknown field"
    _, claim = request_models.check(worker_models.ClaimRequest, {"installed_flows": []})
    assert claim == {"worker_id": "required"}


def test_a_worker_body_is_read_into_the_values_the_routes_use() -> None:
    claim = request_models.parse(worker_models.ClaimRequest, {"worker_id": "w", "installed_flows": [TASK_FLOW],
                                                              "wait_s": 3, "ahead": None, "last_flow": None})
    assert (claim.wait_s, claim.ahead, claim.last_flow, claim.claim_id) == (3.0, False, None, None)
    assert request_models.parse(worker_models.ClaimRequest, {"worker_id": "w", "installed_flows": [],
                                                             "wait_s": None}).wait_s == 20.0
    finish = request_models.parse(worker_models.FinishRequest, {
        "lease_token": "t", "outputs": [{"name": "sub/a.png", "node_id": "7"}], "timings": {"7": 1}})
    assert [(o.name, o.node_id) for o in finish.outputs] == [("sub/a.png", "7")] and finish.timings == {"7": 1.0}
    report = request_models.parse(worker_models.WorkerReport, {
        "mode": "WORKER_HTTP", "device": "cpu", "installed_flows": [], "resources": {"ram_total": 5}})
    assert report.resources_dict() == {"device_name": None, "device_memory_total": None, "device_memory_free": None,
                                       "ram_total": 5, "ram_free": None}
    assert report.models is None and report.stopping is False


async def test_the_worker_limits_the_document_states_are_the_ones_enforced(http: TestClient) -> None:
    schemas = (await (await http.get("/vapi/openapi.json")).json())["components"]["schemas"]
    report = {"device": "cpu", "installed_flows": []}
    mode = schemas["WorkerReport"]["properties"]["mode"]
    response = await http.put("/vapi/worker/workers/w1", json={**report, "mode": "M" * (mode["maxLength"] + 1)})
    assert response.status == 400 and set((await response.json())["details"]) == {"mode"}
    response = await http.put("/vapi/worker/workers/w1", json={**report, "mode": "M" * mode["maxLength"]})
    assert response.status == 200, await response.text()
    wait = schemas["ClaimRequest"]["properties"]["wait_s"]
    claim = {"worker_id": "w1", "installed_flows": [TASK_FLOW]}
    response = await http.post("/vapi/worker/claim", json={**claim, "wait_s": wait["maximum"] + 0.5})
    assert response.status == 400 and set((await response.json())["details"]) == {"wait_s"}
    response = await http.post("/vapi/worker/claim", json={**claim, "wait_s": wait["minimum"]})
    assert response.status == 200 and await response.json() == {"task": None}
    peak = schemas["FailRequest"]["properties"]["peak_vram_bytes"]["anyOf"][0]
    response = await http.post("/vapi/worker/tasks/1/fail", json={"lease_token": "t", "message": "",
                                                                  "peak_vram_bytes": peak["maximum"] + 1})
    assert response.status == 400 and set((await response.json())["details"]) == {"peak_vram_bytes"}
    response = await http.post("/vapi/worker/tasks/1/fail", json={"lease_token": "t", "message": "",
                                                                  "peak_vram_bytes": peak["maximum"]})
    assert response.status == 409, "a valid body reaches the queue (its token owns no task here)"
