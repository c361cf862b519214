"""Reading a task-creation request: a JSON body, or a multipart form whose file parts are streamed to staging.

Both end in one model, ``request_models.TaskCreateRequest`` (``flow``, ``params``, ``count``, ``priority``,
``webhook_url``, ``webhook_headers``), which holds the rules. Multipart: the same fields as text parts (``params`` and
``webhook_headers`` as JSON objects in text), any other text part is one parameter's value, and each file part is the
upload of the image parameter its part is named after. Every malformed field is reported at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from visionatrix.flows.manifest import PARAM_NAME_RE
from visionatrix.server import multipart, parsing, request_models
from visionatrix.server.errors import UnsupportedMediaType
from visionatrix.storage.files import TaskStorage

MAX_FIELD_BYTES = 1024 * 1024
RESERVED_FIELDS = tuple(request_models.TaskCreateRequest.model_fields)
"""The form fields that are the JSON body's fields; any other text field is one parameter's value."""
_SUFFIX_RE = re.compile(r"^\.[a-z0-9]{1,8}$")


@dataclass
class Upload:
    """One staged file: the parameter it is for and its name in the staging folder."""

    param: str
    name: str
    size_bytes: int
    sha256: str


@dataclass
class TaskCreateRequest:
    flow: str
    params: dict[str, Any]
    count: int = 1
    priority: int = 0
    uploads: dict[str, Upload] = field(default_factory=dict)
    webhook: dict[str, Any] | None = None
    """``{"url", "headers"}`` from ``webhook_url`` and ``webhook_headers``; None: no webhook."""


class Staging:
    """The request's staging folder, made on first use; ``discard()`` removes it and what is left in it."""

    def __init__(self, storage: TaskStorage) -> None:
        self.storage = storage
        self.path: Path | None = None

    def folder(self) -> Path:
        if self.path is None:
            self.path = self.storage.staging()
        return self.path

    def discard(self) -> None:
        if self.path is not None:
            self.storage.discard(self.path)
            self.path = None


async def read_create_request(request: web.Request, staging: Staging) -> TaskCreateRequest:
    if request.content_type == "multipart/form-data":
        return await _read_multipart(request, staging)
    if not parsing.is_json_type(request.content_type):
        given = request.content_type if "Content-Type" in request.headers else "none"
        raise UnsupportedMediaType(given, ["application/json", "multipart/form-data"])
    body = request_models.parse(request_models.TaskCreateRequest, await parsing.read_json(request))
    return _request(body, {})


def _request(body: request_models.TaskCreateRequest, uploads: dict[str, Upload]) -> TaskCreateRequest:
    return TaskCreateRequest(body.flow, body.params, body.count, body.priority, uploads, body.webhook)


async def _read_multipart(request: web.Request, staging: Staging) -> TaskCreateRequest:
    """The form's fields are read into the JSON body's model; the problems of the form itself (a field given twice,
    JSON text that breaks the rules, a badly named file) are reported with the model's."""
    fields: dict[str, Any] = {}
    values: dict[str, str] = {}
    uploads: dict[str, Upload] = {}
    problems: dict[str, str] = {}
    reader = await multipart.open_reader(request)
    while (part := await multipart.next_part(reader)) is not None:
        name = part.name or ""
        if name in fields or name in values or name in uploads:
            problems[name] = "given more than once"
        elif part.filename is not None and name not in RESERVED_FIELDS:
            upload = await _save_upload(part, name, staging, problems)
            if upload is not None:
                uploads[name] = upload
        else:
            text = await multipart.read_text(part, f"form field {name!r}", MAX_FIELD_BYTES)
            (fields if name in RESERVED_FIELDS else values)[name] = text
    params = _params_field(fields.get("params"), problems)
    for name, value in values.items():
        if name in params:
            problems[name] = "given both in 'params' and as a form field"
        params[name] = value
    fields["params"] = params
    fields["webhook_headers"] = _json_field("webhook_headers", fields.get("webhook_headers"), problems)
    body, invalid = request_models.check(request_models.TaskCreateRequest, fields)
    problems.update({name: why for name, why in invalid.items() if name not in problems})
    if problems:
        raise request_models.invalid(problems)
    assert body is not None
    return _request(body, uploads)


def _params_field(raw: str | None, problems: dict[str, str]) -> dict[str, Any]:
    return _json_field("params", raw, problems) or {}


def _json_field(name: str, raw: str | None, problems: dict[str, str]) -> dict[str, Any] | None:
    """A form field holding a JSON object (None: not given, or a problem noted under ``name``)."""
    if raw is None or not raw.strip():
        return None
    value = parsing.json_value(name, raw, problems)
    if value is None and name in problems:
        return {}
    if not isinstance(value, dict):
        what = "parameter name -> value" if name == "params" else "header name -> value"
        problems[name] = f"expected a JSON object of {what}, got {type(value).__name__}"
        return {}
    return value


async def _save_upload(part: BodyPartReader, name: str, staging: Staging,
                       problems: dict[str, str]) -> Upload | None:
    if not PARAM_NAME_RE.match(name):
        problems[name or "(unnamed file)"] = "a file part must be named after the image parameter it is for"
        return None
    suffix = Path(part.filename or "").suffix.lower()
    stored = name + (suffix if _SUFFIX_RE.match(suffix) else "")
    storage = staging.storage
    info = await storage.save_stream(staging.folder() / stored, multipart.chunks(part))
    if info.size_bytes == 0 and not part.filename:
        (staging.folder() / stored).unlink(missing_ok=True)  # an empty file input of a browser form: not given
        return None
    return Upload(name, stored, info.size_bytes, info.sha256)
