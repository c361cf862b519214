"""Reading the bodies about models: the ``models`` part of a worker's report. An install request (``POST
/vapi/models/install``, ``POST /vapi/workers/{name}/install``) is ``request_models.ModelInstallRequest``.

Like every body of the API: unknown fields, missing fields and wrong types are all reported at once in one 400
``invalid_request`` whose ``details`` map each field to its problem.
"""

from __future__ import annotations

from typing import Any

from visionatrix.server import request_models
from visionatrix.server.request_models import MAX_MODELS
from visionatrix.server.worker_request import MAX_BYTES, MAX_ID_CHARS, Fields

PROGRESS_STATES = ("queued", "downloading", "verifying", "installed", "failed", "cancelled")
MAX_ERROR_CHARS = 2000


InstallRequest = request_models.ModelInstallRequest
"""An install request: ``names`` (catalog models) or ``flow`` (every catalog model the flow needs)."""


def read_worker_models(fields: Fields) -> dict[str, Any] | None:
    """A report's ``models``: ``present`` (catalog model names), ``loaded`` (``name``, ``kind``, ``bytes``,
    ``where``), ``ram_bytes``, ``vram_bytes``, ``installing`` (name → progress); problems are recorded as
    ``models.<field>``."""
    value = fields.body.get("models")
    if value is None:
        return None
    if not isinstance(value, dict):
        fields.problems["models"] = "expected an object"
        return None
    inner = Fields(value, ("present", "loaded", "ram_bytes", "vram_bytes", "installing"))
    models: dict[str, Any] = {
        "present": inner.names("present", optional=True, what="model", most=MAX_MODELS) or [],
        "loaded": _loaded(inner),
        "ram_bytes": inner.integer("ram_bytes", low=0, high=MAX_BYTES, optional=True) or 0,
        "vram_bytes": inner.integer("vram_bytes", low=0, high=MAX_BYTES, optional=True) or 0,
        "installing": _installing(inner),
    }
    fields.problems.update({f"models.{name}": why for name, why in inner.problems.items()})
    return models


def _loaded(fields: Fields) -> list[dict[str, Any]]:
    items = fields.body.get("loaded") or []
    if not isinstance(items, list) or len(items) > MAX_MODELS:
        fields.problems["loaded"] = f"expected a list of at most {MAX_MODELS} loaded models"
        return []
    loaded = []
    for index, item in enumerate(items):
        entry = Fields(item, ("name", "kind", "bytes", "where")) if isinstance(item, dict) else None
        if entry is None:
            fields.problems[f"loaded.{index}"] = "expected an object"
            continue
        row = {"name": entry.text("name", max_chars=1024), "kind": entry.text("kind", max_chars=64),
               "bytes": entry.integer("bytes", low=0, high=MAX_BYTES), "where": entry.text("where", max_chars=16)}
        if row["where"] not in (None, "ram", "vram"):
            entry.problems["where"] = "expected 'ram' or 'vram'"
        fields.problems.update({f"loaded.{index}.{name}": why for name, why in entry.problems.items()})
        loaded.append(row)
    return loaded


def _installing(fields: Fields) -> dict[str, dict[str, Any]]:
    items = fields.body.get("installing") or {}
    if not isinstance(items, dict) or len(items) > MAX_MODELS:
        fields.problems["installing"] = f"expected an object of at most {MAX_MODELS} installs"
        return {}
    installing = {}
    for name, item in items.items():
        if not isinstance(item, dict) or len(name) > MAX_ID_CHARS:
            fields.problems[f"installing.{name[:MAX_ID_CHARS]}"] = "expected an object"
            continue
        entry = Fields(item, ("name", "state", "bytes_done", "bytes_total", "speed_bps", "eta_s", "error"))
        progress = {"name": name, "state": entry.text("state", max_chars=16),
                    "bytes_done": entry.integer("bytes_done", low=0, high=MAX_BYTES),
                    "bytes_total": entry.integer("bytes_total", low=0, high=MAX_BYTES, optional=True),
                    "speed_bps": entry.number("speed_bps", low=0, high=float(MAX_BYTES), optional=True) or 0.0,
                    "eta_s": entry.number("eta_s", low=0, high=1e9, optional=True),
                    "error": entry.text("error", max_chars=MAX_ERROR_CHARS, optional=True)}
        if progress["state"] is not None and progress["state"] not in PROGRESS_STATES:
            entry.problems["state"] = f"expected one of {', '.join(PROGRESS_STATES)}"
        fields.problems.update({f"installing.{name}.{key}": why for key, why in entry.problems.items()})
        installing[name] = progress
    return installing
