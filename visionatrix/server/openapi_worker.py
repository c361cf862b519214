"""The worker protocol's part of the OpenAPI document: the routes under ``/vapi/worker/`` and the admin's
``PUT /vapi/workers/{worker_id}/allowed_flows``, and the answers' schemas. The request bodies' schemas are generated
from their models (``worker_models``) by ``openapi.document``."""

from __future__ import annotations

from typing import Any

from visionatrix.server import worker_request as limits
from visionatrix.server.openapi_parts import errors, json_body, ref

SECURITY_SCHEMES: dict[str, Any] = {
    "workerBasic": {"type": "http", "scheme": "basic",
                    "description": "WORKER_AUTH set to user:password; required only when the server has it"},
    "workerBearer": {"type": "http", "scheme": "bearer",
                     "description": "WORKER_AUTH set to a token; required only when the server has it"},
}
_WORKER_SECURITY: list[dict[str, list[str]]] = [{}, {"workerBasic": []}, {"workerBearer": []}]

_TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
_WORKER_ID = {"name": "worker_id", "in": "path", "required": True,
              "schema": {"type": "string", "maxLength": limits.MAX_ID_CHARS}}
_FILE_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
              "description": "File name inside the task's folder (may contain one subfolder)"}
_LEASE = {"name": "X-Vix-Lease", "in": "header", "required": True, "schema": {"type": "string"},
          "description": "The task's lease token"}
_FLOW_NAMES = {"type": "array", "maxItems": limits.MAX_FLOWS,
               "items": {"type": "string", "minLength": 1, "maxLength": limits.MAX_ID_CHARS}}


def _status(*values: str) -> dict[str, Any]:
    return {"type": "object", "required": ["status"], "properties": {"status": {"enum": list(values)}}}


SCHEMAS: dict[str, Any] = {  # the request bodies' schemas are generated from ``worker_models``
    "WithdrawReply": {"type": "object", "required": ["released_task_id"],
                      "properties": {"released_task_id": {"type": ["integer", "null"]}}},
    "ClaimedTask": {
        "type": "object",
        "required": ["id", "flow", "graph", "params", "lease_token", "lease_expires_at", "attempt", "inputs"],
        "properties": {
            "id": {"type": "integer"},
            "flow": {"type": "string"},
            "graph": {"type": "object", "description": "The bound graph in ComfyUI's API format"},
            "params": {"type": "object"},
            "lease_token": {"type": "string"},
            "lease_expires_at": {"type": "string", "format": "date-time"},
            "attempt": {"type": "integer"},
            "inputs": {"type": "array", "items": {
                "type": "object",
                "required": ["name", "size_bytes", "sha256", "url"],
                "properties": {"name": {"type": "string"}, "size_bytes": {"type": "integer"},
                               "sha256": {"type": "string"},
                               "url": {"type": "string", "description": "The worker route that downloads it"}},
            }},
        },
    },
    "ClaimReply": {"type": "object", "required": ["task"],
                   "properties": {"task": {"oneOf": [ref("ClaimedTask"), {"type": "null"}]}}},
    "HeartbeatReply": {"type": "object", "required": ["cancel_requested"],
                       "properties": {"cancel_requested": {"type": "boolean"}}},
    "OutputUploaded": {"type": "object", "required": ["name", "size_bytes", "sha256"],
                       "properties": {"name": {"type": "string"}, "size_bytes": {"type": "integer"},
                                      "sha256": {"type": "string"}}},
    "AllowedFlows": {
        "type": "object",
        "required": ["allowed_flows"],
        "properties": {"allowed_flows": {**_FLOW_NAMES, "type": ["array", "null"],
                                         "description": "null: every flow the worker has installed"}},
    },
}


def _post(summary: str, operation_id: str, request: str, reply: dict[str, Any], *codes: int) -> dict[str, Any]:
    return {"post": {
        "summary": summary, "operationId": operation_id, "parameters": [_TASK_ID], "security": _WORKER_SECURITY,
        "requestBody": {"required": True, "content": {"application/json": {"schema": ref(request)}}},
        "responses": {"200": json_body(reply, "Done"), **errors(*codes)},
    }}



def _upload(summary: str, operation_id: str) -> dict[str, Any]:
    """A ``PUT`` of one file of a task (the raw body), as outputs and temps are uploaded."""
    digest = {"name": "X-Vix-SHA256", "in": "header", "required": False,
              "schema": {"type": "string", "pattern": "^[0-9a-fA-F]{64}$"},
              "description": "The body's SHA-256; a body that differs is refused (digest_mismatch)"}
    return {"put": {
        "summary": summary, "operationId": operation_id, "security": _WORKER_SECURITY,
        "parameters": [_TASK_ID, _FILE_NAME, _LEASE, digest],
        "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {
            "type": "string", "format": "binary"}}}},
        "responses": {"201": json_body(ref("OutputUploaded"), "Stored"), **errors(400, 401, 409, 413)},
    }}

PATHS: dict[str, Any] = {
    "/vapi/worker/claim": {
        "post": {
            "summary": "Claim the next task of the worker's flows (those an admin allows), waiting up to wait_s "
                       "for one; {task: null} when none came",
            "operationId": "workerClaim", "security": _WORKER_SECURITY,
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref("ClaimRequest")}}},
            "responses": {"200": json_body(ref("ClaimReply"), "The claimed task, or null"), **errors(400, 401)},
        },
    },
    "/vapi/worker/claim/withdraw": {
        "post": {
            "summary": "Withdraw a claim the worker gave up on: the task it got, if any, is released at once",
            "operationId": "workerWithdrawClaim", "security": _WORKER_SECURITY,
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref("WithdrawRequest")}}},
            "responses": {"200": json_body(ref("WithdrawReply"), "What was released"), **errors(400, 401)},
        },
    },
    "/vapi/worker/tasks/{task_id}/preview": {
        "post": {
            "summary": "A running node's preview image (JPEG or PNG, at most 4 MB) for the task's followers (the "
                       "ComfyUI socket of the client that queued it); not stored",
            "operationId": "workerPreview", "security": _WORKER_SECURITY,
            "parameters": [_TASK_ID, _LEASE, {"name": "X-Vix-Node", "in": "header", "required": True,
                                               "schema": {"type": "string"}, "description": "The node's id"}],
            "requestBody": {"required": True, "content": {"image/jpeg": {"schema": {"type": "string",
                                                                                    "format": "binary"}},
                                                          "image/png": {"schema": {"type": "string",
                                                                                   "format": "binary"}}}},
            "responses": {"204": {"description": "Passed on"}, **errors(400, 401, 409, 413)},
        },
    },
    "/vapi/worker/tasks/{task_id}/inputs/{name}": {
        "get": {
            "summary": "Download one of the claimed task's inputs (extends the lease)",
            "operationId": "workerDownloadInput", "security": _WORKER_SECURITY,
            "parameters": [_TASK_ID, _FILE_NAME, _LEASE],
            "responses": {"200": {"description": "The file's bytes; X-Vix-SHA256 carries its digest",
                                  "headers": {"X-Vix-SHA256": {"schema": {"type": "string"}}},
                                  "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
                          **errors(400, 401, 404, 409)},
        },
    },
    "/vapi/worker/tasks/{task_id}/start": _post(
        "The worker starts executing the claimed task: it shows running, and is timed, from now (extends the lease); "
        "409 when it is no longer the worker's (cancelled while claimed): drop it unrun", "workerStart",
        "LeaseRequest", ref("HeartbeatReply"), 400, 401, 409),
    "/vapi/worker/tasks/{task_id}/heartbeat": _post(
        "Extend the lease (and report progress); says whether a cancel was requested", "workerHeartbeat",
        "Heartbeat", ref("HeartbeatReply"), 400, 401, 409),
    "/vapi/worker/tasks/{task_id}/outputs/{name}": _upload(
        "Upload one output file (the raw body); a second upload of the name replaces the first", "workerUploadOutput"),
    "/vapi/worker/tasks/{task_id}/temps/{name}": _upload(
        "Upload one temporary output (a preview image; the raw body), listed in the finish's temps",
        "workerUploadTemp"),
    "/vapi/worker/tasks/{task_id}/finish": _post(
        "The run succeeded: record the uploaded outputs (measured by the server) and the timings", "workerFinish",
        "FinishRequest", _status("finished"), 400, 401, 409),
    "/vapi/worker/tasks/{task_id}/fail": _post(
        "The run failed at a node", "workerFail", "FailRequest", _status("failed"), 400, 401, 409),
    "/vapi/worker/tasks/{task_id}/cancelled": _post(
        "The worker stopped the run of a task whose cancel was requested", "workerCancelled", "LeaseRequest",
        _status("cancelled"), 400, 401, 409),
    "/vapi/worker/tasks/{task_id}/release": _post(
        "Give the task back unrun (pending again; cancelled when its cancel was requested)", "workerRelease",
        "LeaseRequest", _status("pending", "cancelled"), 400, 401, 409),
    "/vapi/worker/workers/{worker_id}": {
        "put": {
            "summary": "The worker's liveness report; answers the flows an admin lets it take",
            "operationId": "workerReport", "security": _WORKER_SECURITY, "parameters": [_WORKER_ID],
            "requestBody": {"required": True, "content": {"application/json": {"schema": ref("WorkerReport")}}},
            "responses": {"200": json_body(ref("AllowedFlows"), "Stored"), **errors(400, 401)},
        },
    },
    "/vapi/workers/{worker_id}/allowed_flows": {
        "put": {
            "summary": "Admin: restrict a worker to some flows (null lifts the restriction)",
            "operationId": "setWorkerAllowedFlows", "parameters": [_WORKER_ID],
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": ref("AllowedFlowsRequest")}}},
            "responses": {"200": json_body(ref("Worker"), "The worker"), **errors(400, 404)},
        },
    },
}
