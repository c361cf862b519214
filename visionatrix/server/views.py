"""The JSON shapes the API answers with, built from the queue's records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from visionatrix.flows.flow import Flow
from visionatrix.flows.installed import missing_models
from visionatrix.queue.models import ClaimedTask, FileRecord, TaskRecord, WorkerRecord, effective_flows
from visionatrix.server.services import Services

API_PREFIX = "/vapi"


def file_url(task_id: int, kind: str, name: str) -> str:
    """The path that downloads one of a task's files (relative to the server's base URL)."""
    return f"{API_PREFIX}/tasks/{task_id}/files/{kind}/{quote(name, safe='/')}"


def worker_input_url(task_id: int, name: str) -> str:
    """The worker route that downloads one of a task's inputs (relative to the server's base URL)."""
    return f"{API_PREFIX}/worker/tasks/{task_id}/inputs/{quote(name, safe='/')}"


def file_view(task_id: int, record: FileRecord) -> dict[str, Any]:
    return {
        "name": record.name,
        "kind": record.kind,
        "param": record.param,
        "node_id": record.node_id,
        "size_bytes": record.size_bytes,
        "sha256": record.sha256,
        "url": file_url(task_id, record.kind, record.name),
    }


def task_view(task: TaskRecord) -> dict[str, Any]:
    """A task as the API shows it; its shape is ``response_models.Task`` (a test holds the two together)."""
    error = None
    if task.error:
        error = {key: task.error.get(key) for key in ("node_id", "class_type", "message")}
    return {
        "id": task.id,
        "flow": task.flow,
        "status": str(task.status),
        "priority": task.priority,
        "params": task.params,
        "progress": task.progress,
        "current_node": task.current_node,
        "worker_id": task.worker_id,
        "attempt": task.attempt,
        "cancel_requested": task.cancel_requested,
        "error": error,
        "timings": task.timings,
        "peak_vram_bytes": task.peak_vram_bytes,
        "webhook_url": task.webhook.get("url") if task.webhook else None,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "finished_at": task.finished_at,
        "updated_at": task.updated_at,
        "inputs": [file_view(task.id, f) for f in task.files if f.kind == "input"],
        "outputs": [file_view(task.id, f) for f in task.files if f.kind == "output"],
        "previews": [file_view(task.id, f) for f in task.files if f.kind == "temp"],
    }


def claimed_task_view(task: ClaimedTask, files: list[FileRecord]) -> dict[str, Any]:
    """What a worker gets from ``POST /vapi/worker/claim``: the work, its lease and where its inputs are."""
    return {
        "id": task.id,
        "flow": task.flow,
        "graph": task.graph,
        "params": task.params,
        "lease_token": task.lease_token,
        "lease_expires_at": task.lease_expires_at,
        "attempt": task.attempt,
        "inputs": [{"name": f.name, "size_bytes": f.size_bytes, "sha256": f.sha256,
                    "url": worker_input_url(task.id, f.name)} for f in files if f.kind == "input"],
    }


OFFLINE_AFTER_S = 45.0
"""A worker not heard from for this long is ``offline`` (workers report every 10 s; a claim or heartbeat of a
Server-mode worker does not count, so this allows for a few lost reports)."""


def worker_state(worker: WorkerRecord, now: datetime | None = None) -> str:
    """``offline`` (it said it was stopping, or it has not reported for ``OFFLINE_AFTER_S``), ``busy`` (running a
    task) or ``idle``."""
    now = now or datetime.now(UTC)
    if worker.stopped_at is not None or (now - worker.last_seen_at).total_seconds() > OFFLINE_AFTER_S:
        return "offline"
    return "busy" if worker.current_task_id is not None else "idle"


def worker_view(worker: WorkerRecord) -> dict[str, Any]:
    return {
        "worker_id": worker.worker_id,
        "mode": worker.mode,
        "device": worker.device,
        "state": worker_state(worker),
        "installed_flows": list(worker.installed_flows),
        "allowed_flows": None if worker.allowed_flows is None else list(worker.allowed_flows),
        "flows": effective_flows(worker.installed_flows, worker.allowed_flows),
        "current_task_id": worker.current_task_id,
        "last_seen_at": worker.last_seen_at,
        "stopped_at": worker.stopped_at,
        "resources": worker.resources,
        "models": worker.models,
    }


def flow_view(flow: Flow, services: Services) -> dict[str, Any]:
    """``Flow.info()`` plus ``bundled`` and ``models_missing`` (its model files not in the server's model folders;
    every one when the server has none)."""
    info = flow.info()
    folders = services.model_folders
    missing = ([str(m.get("value") or m.get("name")) for m in info["models"]] if folders is None
               else missing_models(info["models"], folders))
    return {**info, "bundled": services.flows.is_bundled(flow.name), "models_missing": missing}
