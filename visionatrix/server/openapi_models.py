"""The OpenAPI description of the model routes (``/vapi/models``, a worker's install and free), merged into the
document by ``openapi.document``."""

from __future__ import annotations

from typing import Any

from visionatrix.server.openapi_parts import errors as _errors
from visionatrix.server.openapi_parts import json_body as _json
from visionatrix.server.openapi_parts import ref as _ref

_MODEL_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
               "description": "The model's name in the catalog"}
_WORKER_ID = {"name": "worker_id", "in": "path", "required": True, "schema": {"type": "string"}}
_INSTALL_BODY = {"required": True, "content": {"application/json": {"schema": _ref("ModelInstallRequest")}}}

SCHEMAS: dict[str, Any] = {
    "ModelProgress": {
        "type": "object",
        "description": "A download's progress; also the `model_progress` event (with `type` and, for a worker's "
                       "install, `worker_id`)",
        "properties": {
            "name": {"type": "string"},
            "state": {"enum": ["queued", "downloading", "verifying", "installed", "failed", "cancelled"]},
            "bytes_done": {"type": "integer"},
            "bytes_total": {"type": ["integer", "null"]},
            "speed_bps": {"type": "number", "description": "bytes per second, recent average"},
            "eta_s": {"type": ["number", "null"]},
            "error": {"type": ["string", "null"]},
            "worker_id": {"type": ["string", "null"]},
        },
    },
    "Model": {
        "type": "object",
        "required": ["name", "folder", "filename", "state"],
        "properties": {
            "name": {"type": "string"},
            "folder": {"type": "string", "description": "the models folder it is installed into (checkpoints, ...)"},
            "filename": {"type": "string"},
            "state": {"enum": ["installed", "missing", "partial", "corrupt"],
                      "description": "partial: a download stopped part way (the next install resumes it); corrupt: "
                                     "the file's size or sha256 is not the catalog's"},
            "file_size": {"type": ["integer", "null"]},
            "bytes_on_disk": {"type": "integer"},
            "url": {"type": ["string", "null"]},
            "homepage": {"type": ["string", "null"]},
            "gated": {"type": "boolean", "description": "needs HF_TOKEN or CIVITAI_TOKEN on the downloading host"},
            "flows": {"type": "array", "items": {"type": "string"}, "description": "installed flows needing it"},
            "progress": {"oneOf": [{"type": "null"}, _ref("ModelProgress")]},
        },
        "additionalProperties": True,
    },
    "ModelList": {"type": "object", "properties": {"models": {"type": "array", "items": _ref("Model")}}},
    "WorkerModels": {
        "type": "object",
        "description": "The worker's models as it last reported them",
        "properties": {
            "present": {"type": "array", "items": {"type": "string"},
                        "description": "catalog models in its own models folder"},
            "loaded": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "kind": {"type": "string"}, "bytes": {"type": "integer"},
                "where": {"enum": ["ram", "vram"]}}}},
            "ram_bytes": {"type": "integer"},
            "vram_bytes": {"type": "integer"},
            "installing": {"type": "object", "additionalProperties": _ref("ModelProgress")},
        },
    },
}

PATHS: dict[str, Any] = {
    "/vapi/models": {
        "get": {"summary": "The catalog's models with their state in the server's models folder",
                "operationId": "listModels",
                "parameters": [{"name": "flow", "in": "query", "required": False, "schema": {"type": "string"},
                                "description": "only the models this flow needs"}],
                "responses": {"200": _json(_ref("ModelList"), "Every catalog model"), **_errors(404)}},
    },
    "/vapi/models/install": {
        "post": {"summary": "Download models into the server's models folder (verified, resumable); progress "
                            "comes as model_progress events",
                 "operationId": "installModels", "requestBody": _INSTALL_BODY,
                 "responses": {"202": _json(_ref("ModelInstallStarted"), "Downloads started"),
                               **_errors(400, 404)}},
    },
    "/vapi/models/{name}/cancel": {
        "post": {"summary": "Cancel a model's download (its partial file stays for a later resume)",
                 "operationId": "cancelModelInstall", "parameters": [_MODEL_NAME],
                 "responses": {"200": _json({"type": "object", "properties": {"cancelled": {"type": "boolean"}}},
                                            "Whether a download was running"), **_errors(404)}},
    },
    "/vapi/models/{name}": {
        "delete": {"summary": "Delete a model's file (and partial download) from the server's models folder",
                   "operationId": "removeModel", "parameters": [_MODEL_NAME],
                   "responses": {"204": {"description": "Removed"}, **_errors(400, 404, 409)}},
    },
    "/vapi/workers/{worker_id}/install": {
        "post": {"summary": "Ask one worker to download models into its own models folder (with its next report, "
                            "within 10 s); it reports progress in `models.installing`",
                 "operationId": "installModelsOnWorker", "parameters": [_WORKER_ID], "requestBody": _INSTALL_BODY,
                 "responses": {"202": _json(_ref("WorkerCommandQueued"), "Queued for the worker"),
                               **_errors(400, 404)}},
    },
    "/vapi/workers/{worker_id}/free": {
        "post": {"summary": "Ask one worker to unload every model it holds (with its next report)",
                 "operationId": "freeWorker", "parameters": [_WORKER_ID],
                 "responses": {"202": _json(_ref("WorkerCommandQueued"), "Queued for the worker"),
                               **_errors(404)}},
    },
}
