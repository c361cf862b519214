"""The OpenAPI 3.1 description of the REST API (served at ``GET /vapi/openapi.json``).

The request bodies' schemas (and some answers') are generated from their pydantic models (``request_models``,
``worker_models``, ``response_models``, ``auth_models``), who may call each operation from the access table
(``openapi_auth.state_roles``); the rest is written here as data. A test checks that its paths and methods are
exactly the application's routes. The worker protocol's part is in ``openapi_worker``, the models' in
``openapi_models``.
"""

from __future__ import annotations

import copy
from typing import Any

from visionatrix.server import (
    openapi_auth,
    openapi_models,
    openapi_worker,
    request_models,
    response_models,
    worker_models,
)
from visionatrix.server.openapi_parts import ERROR_RESPONSES, model_schemas
from visionatrix.server.openapi_parts import errors as _errors
from visionatrix.server.openapi_parts import json_body as _json
from visionatrix.server.openapi_parts import ref as _ref

_TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
_FLOW_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_EVENT_FILTER = {"name": "task_id", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1},
                 "description": "Only the events of this task"}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "message", "details"],
        "properties": {
            "error": {"type": "string", "description": "A stable code: not_found, conflict, invalid_params, "
                      "invalid_graph, invalid_flow, invalid_input, invalid_json, invalid_request, invalid_query, "
                      "invalid_multipart, too_large, unsupported_media_type, method_not_allowed, internal_error, "
                      "invalid_model, model_error, download_refused, download_failed, download_unauthorized, "
                      "invalid_url, too_many_nodes, unauthorized, invalid_credentials, forbidden, "
                      "host_not_allowed, cross_origin_refused, body_timeout, too_many_attempts, too_many_pending; "
                      "worker routes also: lease_lost, digest_mismatch, missing_outputs"},
            "message": {"type": "string"},
            "details": {"description": "invalid_params: {parameter: problem}; invalid_graph: {error, node_errors} "
                        "(ComfyUI's shape); invalid_request/invalid_query: {field: problem}"},
        },
    },
    "Health": {"type": "object", "properties": {"status": {"const": "ok"}, "version": {"type": "string"}}},
    "FlowInput": {
        "type": "object",
        "required": ["name", "type", "display_name", "optional", "default"],
        "properties": {
            "name": {"type": "string"},
            "type": {"enum": ["text", "number", "range", "range_scale", "bool", "list", "image", "image_mask",
                              "mask"]},
            "display_name": {"type": "string"},
            "optional": {"type": "boolean"},
            "default": {},
            "min": {"type": "number"},
            "max": {"type": "number"},
            "step": {"type": "number"},
            "integer": {"type": "boolean"},
            "options": {"type": "object"},
        },
        "additionalProperties": True,
    },
    "Flow": {
        "type": "object",
        "required": ["name", "display_name", "version", "inputs", "outputs", "bundled"],
        "properties": {
            "name": {"type": "string"},
            "display_name": {"type": "string"},
            "description": {"type": "string"},
            "version": {"type": "string"},
            "author": {"type": "string"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "inputs": {"type": "array", "items": _ref("FlowInput")},
            "outputs": {"type": "array", "items": {"type": "object"}},
            "node_types": {"type": "array", "items": {"type": "string"}},
            "missing_node_types": {"type": "array", "items": {"type": "string"}},
            "models": {"type": "array", "items": {"type": "object"}},
            "warnings": {"type": "array", "items": {"type": "string"}},
            "bundled": {"type": "boolean",
                        "description": "Shipped with the server: DELETE uninstalls it, POST /vapi/flows/bundled/{name} "
                                       "installs it again"},
            "models_missing": {"type": "array", "items": {"type": "string"},
                               "description": "Model files of the flow not found in the server's models folder"},
        },
        "additionalProperties": True,
    },
    "BundledFlowList": {"type": "object", "properties": {"flows": {"type": "array", "items": {
        "allOf": [_ref("Flow"), {"type": "object", "required": ["installed"],
                                 "properties": {"installed": {"type": "boolean"}}}]}}}},
    "Worker": {
        "type": "object",
        "properties": {
            "worker_id": {"type": "string"},
            "mode": {"type": "string"},
            "device": {"type": "string"},
            "installed_flows": {"type": "array", "items": {"type": "string"}},
            "state": {"enum": ["idle", "busy", "offline"],
                      "description": "offline: it said it stopped, or has not reported for 45 s"},
            "current_task_id": {"type": ["integer", "null"]},
            "last_seen_at": {"type": "string", "format": "date-time"},
            "stopped_at": {"type": ["string", "null"], "format": "date-time"},
            "allowed_flows": {"type": ["array", "null"], "items": {"type": "string"},
                              "description": "The flows an admin lets this worker take; null: every flow it has"},
            "flows": {"type": "array", "items": {"type": "string"},
                      "description": "The flows it takes now: installed_flows narrowed by allowed_flows"},
            "resources": {"oneOf": [{"type": "null"}, _ref("WorkerResources")]},
            "models": {"oneOf": [{"type": "null"}, _ref("WorkerModels")]},
        },
    },
    "WorkerList": {"type": "object", "properties": {"workers": {"type": "array", "items": _ref("Worker")}}},
    "Event": {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"enum": ["subscribed", "task_queued", "task_claimed", "task_started", "task_progressed",
                              "task_finished", "task_failed", "task_cancelled", "task_restarted", "task_deleted",
                              "worker_updated", "flows_changed", "model_progress", "models_changed"]},
            "worker_id": {"type": ["string", "null"], "description": "worker_updated: the worker that reported or "
                          "changed; model_progress: the worker downloading (null: the server)"},
            "name": {"type": "string", "description": "model_progress, models_changed: the catalog model"},
            "change": {"enum": ["uploaded", "deleted", "installed", "uninstalled", "removed"],
                       "description": "flows_changed: what happened to `flow`; models_changed: to the model `name` "
                                      "(installed, removed)"},
            "task_id": {"type": ["integer", "null"]},
            "flow": {"type": "string"},
            "progress": {"type": "number"},
            "current_node": {"type": ["string", "null"]},
        },
        "additionalProperties": True,
    },
}

_PATHS: dict[str, Any] = {
    "/vapi/health": {
        "get": {"summary": "Liveness and version", "operationId": "health",
                "responses": {"200": _json(_ref("Health"), "The server is up")}},
    },
    "/vapi/openapi.json": {
        "get": {"summary": "This document", "operationId": "openapi",
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document")}},
    },
    "/vapi/flows": {
        "get": {"summary": "List the flows (bundled and uploaded)", "operationId": "listFlows",
                "responses": {"200": _json(_ref("FlowList"), "Every flow's summary")}},
        "post": {
            "summary": "Upload a flow (Visionatrix-annotated API graph, ComfyUI UI workflow or explicit manifest)",
            "operationId": "uploadFlow",
            "parameters": [{"name": "name", "in": "query", "required": False, "schema": {"type": "string"},
                            "description": "Name for a graph that has no metadata of its own"}],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": {"type": "object"}},
                "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
                    "file": {"type": "string", "format": "binary"}}}},
            }},
            "responses": {"201": _json(_ref("Flow"), "The imported flow"), **_errors(400, 409, 413, 415)},
        },
    },
    "/vapi/flows/{name}": {
        "get": {"summary": "One flow", "operationId": "getFlow", "parameters": [_FLOW_NAME],
                "responses": {"200": _json(_ref("Flow"), "The flow's summary"), **_errors(404)}},
        "delete": {"summary": "Delete an uploaded flow, or uninstall a bundled one", "operationId": "deleteFlow",
                   "parameters": [_FLOW_NAME],
                   "responses": {"204": {"description": "Deleted or uninstalled"}, **_errors(404)}},
    },
    "/vapi/flows/{name}/graph": {
        "get": {"summary": "The flow's API-format graph, with its default values", "operationId": "getFlowGraph",
                "parameters": [_FLOW_NAME],
                "responses": {"200": _json({"type": "object"}, "ComfyUI API-format graph: node id -> node"),
                              **_errors(404)}},
    },
    "/vapi/flows/bundled": {
        "get": {"summary": "Every flow shipped with the server, installed or not", "operationId": "listBundledFlows",
                "responses": {"200": _json(_ref("BundledFlowList"), "The bundled flows")}},
    },
    "/vapi/flows/bundled/{name}": {
        "post": {"summary": "Install a bundled flow (again)", "operationId": "installBundledFlow",
                 "parameters": [_FLOW_NAME],
                 "responses": {"201": _json(_ref("Flow"), "The installed flow"), **_errors(404)}},
    },
    "/vapi/tasks": {
        "get": {
            "summary": "List tasks, newest first", "operationId": "listTasks",
            "parameters": [
                {"name": "status", "in": "query", "schema": {"enum": ["pending", "claimed", "running", "finished",
                                                                      "failed", "cancelled"]}},
                {"name": "flow", "in": "query", "schema": {"type": "string"}},
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500,
                                                            "default": 50}},
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
            ],
            "responses": {"200": _json(_ref("TaskList"), "The tasks"), **_errors(400)},
        },
        "post": {
            "summary": "Create tasks of a flow (count copies), with uploads for image parameters",
            "operationId": "createTasks",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("TaskCreateRequest")},
                "multipart/form-data": {"schema": _ref("TaskCreateForm")},
            }},
            "responses": {"201": _json(_ref("TasksCreated"), "The new tasks' ids"),
                          **_errors(400, 404, 413, 415)},
        },
    },
    "/vapi/tasks/{task_id}": {
        "get": {"summary": "One task: status, progress, error, inputs and outputs with download URLs",
                "operationId": "getTask", "parameters": [_TASK_ID],
                "responses": {"200": _json(_ref("Task"), "The task"), **_errors(404)}},
        "delete": {"summary": "Delete a task and its files (cancel a running task first)",
                   "operationId": "deleteTask", "parameters": [_TASK_ID],
                   "responses": {"204": {"description": "Deleted"}, **_errors(404, 409)}},
    },
    "/vapi/tasks/{task_id}/cancel": {
        "post": {"summary": "Cancel: a pending task at once, a running one at its next checkpoint",
                 "operationId": "cancelTask", "parameters": [_TASK_ID],
                 "responses": {"200": _json(_ref("Task"), "The task after the request"), **_errors(404, 409)}},
    },
    "/vapi/tasks/{task_id}/restart": {
        "post": {"summary": "Queue a failed or cancelled task again", "operationId": "restartTask",
                 "parameters": [_TASK_ID],
                 "responses": {"200": _json(_ref("Task"), "The task, pending again"), **_errors(404, 409)}},
    },
    "/vapi/tasks/{task_id}/files/{kind}/{name}": {
        "get": {
            "summary": "Download one of a task's files", "operationId": "downloadTaskFile",
            "parameters": [_TASK_ID,
                           {"name": "kind", "in": "path", "required": True, "schema": {"enum": ["input", "output"]}},
                           {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                            "description": "File name inside the task's folder (may contain one subfolder)"}],
            "responses": {"200": {"description": "The file's bytes", "content": {"*/*": {"schema": {
                "type": "string", "format": "binary"}}}}, **_errors(404)},
        },
    },
    "/vapi/workers": {
        "get": {"summary": "Workers that reported in", "operationId": "listWorkers",
                "responses": {"200": _json(_ref("WorkerList"), "The workers")}},
    },
    "/vapi/events": {
        "get": {
            "summary": "WebSocket of task events (JSON text frames); first frame {type: subscribed}",
            "operationId": "eventsWebSocket", "parameters": [_EVENT_FILTER],
            "responses": {"101": {"description": "Switching to the WebSocket protocol; each frame is an Event",
                                  "content": {"application/json": {"schema": _ref("Event")}}},
                          **_errors(400)},
        },
    },
    "/vapi/events/stream": {
        "get": {
            "summary": "Server-Sent Events of task events (each `data:` line is an Event)",
            "operationId": "eventsStream", "parameters": [_EVENT_FILTER],
            "responses": {"200": {"description": "text/event-stream",
                                  "content": {"text/event-stream": {"schema": _ref("Event")}}},
                          **_errors(400)},
        },
    },
}


def _task_form(body: dict[str, Any]) -> dict[str, Any]:
    """The multipart form of ``POST /vapi/tasks``: the JSON body's fields as text parts, read into the same model."""
    properties = copy.deepcopy(body["properties"])
    properties["params"] = {"type": "string", "description": "A JSON object of parameter name -> value"}
    properties["webhook_headers"] = {"type": "string", "description": "A JSON object of header name -> value, as in "
                                                                      "the JSON body's webhook_headers"}
    return {"type": "object", "required": body["required"], "properties": properties,
            "description": "Any other text field is one parameter's value; each file part is the upload of the "
                           "image parameter it is named after.",
            "additionalProperties": {"oneOf": [{"type": "string"}, {"type": "string", "format": "binary"}]}}


def _generated_schemas() -> dict[str, Any]:
    schemas = model_schemas(*request_models.BODIES, *request_models.RESPONSES, *worker_models.BODIES,
                            *response_models.RESPONSES)
    schemas["TaskCreateForm"] = _task_form(schemas["TaskCreateRequest"])
    return schemas


def document(version: str) -> dict[str, Any]:
    """The OpenAPI document for a server of ``version``."""
    paths = copy.deepcopy({**_PATHS, **openapi_models.PATHS, **openapi_worker.PATHS, **openapi_auth.paths()})
    openapi_auth.state_roles(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Visionatrix API", "version": version,
                 "description": "Runs ComfyUI-format flows as tasks. Errors are "
                                "{error, message, details} JSON objects."},
        "paths": paths,
        "components": {
            "schemas": copy.deepcopy({**_SCHEMAS, **openapi_models.SCHEMAS, **openapi_worker.SCHEMAS,
                                      **openapi_auth.schemas()}) | _generated_schemas(),
            "responses": {name: _json(_ref("Error"), description) for name, description in ERROR_RESPONSES.values()},
            "securitySchemes": copy.deepcopy({**openapi_worker.SECURITY_SCHEMES, **openapi_auth.SECURITY_SCHEMES}),
        },
    }
