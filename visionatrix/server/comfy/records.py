"""Our task rows in ComfyUI's shapes: queue items, history entries, node outputs (``comfyui_api.md`` §1.4).

A prompt's task keeps ComfyUI's ``number``, ``extra_data`` and output nodes in ``prompt_extra``. Its output files
are ``output/<task id>/<name>``, which ComfyUI clients address as ``{"filename", "subfolder": "<task id>",
"type": "output"}`` (``/view`` resolves that); its temporary outputs (previews) are ``temp/<task id>/<name>``,
addressed the same way with ``"type": "temp"``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from visionatrix.queue.models import TaskRecord, TaskStatus
from visionatrix.server.comfy.paths import output_ref

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".webm", ".mov", ".mkv"}
AUDIO_SUFFIXES = {".wav", ".mp3", ".flac", ".ogg", ".m4a"}


def ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)


def queue_item(task: TaskRecord, prompt_id: str, prompt_extra: dict[str, Any] | None) -> list[Any]:
    """``[number, prompt_id, prompt, extra_data, outputs_to_execute]``."""
    extra = prompt_extra or {}
    return [extra.get("number", task.id), prompt_id, task.graph, extra.get("extra_data", {}),
            list(extra.get("outputs", []))]


def media_key(name: str) -> str:
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "images"
    if suffix in VIDEO_SUFFIXES:
        return "gifs"  # what ComfyUI's video nodes report
    if suffix in AUDIO_SUFFIXES:
        return "audio"
    return "files"


def node_outputs(task: TaskRecord) -> dict[str, dict[str, list[dict[str, str]]]]:
    """``{node_id: {"images": [file_ref, ...]}}`` from the task's output files and temporary outputs (previews,
    ``"type": "temp"``)."""
    outputs: dict[str, dict[str, list[dict[str, str]]]] = {}
    for record in task.files:
        if record.kind not in ("output", "temp"):
            continue
        node = record.node_id or "0"
        ref = output_ref(task.id, record.name, record.kind)
        outputs.setdefault(node, {}).setdefault(media_key(record.name), []).append(ref)
    return outputs


def node_meta(task: TaskRecord, node_id: str) -> dict[str, str | None]:
    """ComfyUI's ``meta`` of a node that reported outputs: ``node_id`` (the id it ran under), ``display_node`` and
    ``real_node_id`` (the submitted graph's node it shows as) and ``parent_node`` (the node that expanded into it;
    None for a node of the submitted graph).

    A node made by expansion runs as ``"<expanding node id>.<...>"``, so its graph node is the longest prefix of
    its id, cut at a dot, that names a node of the graph, and its parent the longest such prefix that names a node
    of the graph or one that ran (the task's timings)."""
    graph = task.graph
    if node_id in graph:
        return {"node_id": node_id, "display_node": node_id, "parent_node": None, "real_node_id": node_id}
    prefixes = [node_id[:i] for i in range(len(node_id) - 1, 0, -1) if node_id[i] == "."]
    shown = next((p for p in prefixes if p in graph), node_id)
    ran = task.timings or {}
    parent = next((p for p in prefixes if p in graph or p in ran), None)
    return {"node_id": node_id, "display_node": shown, "parent_node": parent, "real_node_id": shown}


def status_messages(task: TaskRecord, prompt_id: str) -> list[list[Any]]:
    """The execution messages ComfyUI keeps in a history entry, rebuilt from the row."""
    messages: list[list[Any]] = []
    if task.started_at is not None:
        messages.append(["execution_start", {"prompt_id": prompt_id, "timestamp": ms(task.started_at)}])
        messages.append(["execution_cached", {"nodes": [], "prompt_id": prompt_id, "timestamp": ms(task.started_at)}])
    end = ms(task.finished_at)
    if task.status is TaskStatus.FINISHED:
        messages.append(["execution_success", {"prompt_id": prompt_id, "timestamp": end}])
    elif task.status is TaskStatus.FAILED:
        messages.append(["execution_error", error_payload(task, prompt_id)])
    elif task.status is TaskStatus.CANCELLED:
        messages.append(["execution_interrupted", {"prompt_id": prompt_id, "node_id": task.current_node,
                                                   "node_type": _class_of(task, task.current_node),
                                                   "executed": [], "timestamp": end}])
    return messages


def error_payload(task: TaskRecord, prompt_id: str) -> dict[str, Any]:
    """``execution_error``'s fields from the task's stored error."""
    error = task.error or {}
    node_id = error.get("node_id")
    message = str(error.get("message") or "failed")
    node_type = error.get("class_type") or _class_of(task, node_id)
    return {"prompt_id": prompt_id, "node_id": node_id, "node_type": node_type, "executed": [],
            "exception_message": message, "exception_type": error.get("exception_type") or "Exception",
            "traceback": [line + "\n" for line in str(error.get("traceback") or "").splitlines()],
            "current_inputs": {}, "current_outputs": [], "timestamp": ms(task.finished_at)}


def _class_of(task: TaskRecord, node_id: str | None) -> str | None:
    node = task.graph.get(node_id) if node_id is not None else None
    return node.get("class_type") if isinstance(node, dict) else None


def history_entry(task: TaskRecord, prompt_id: str, prompt_extra: dict[str, Any] | None) -> dict[str, Any]:
    outputs = node_outputs(task)
    success = task.status is TaskStatus.FINISHED
    return {
        "prompt": queue_item(task, prompt_id, prompt_extra),
        "outputs": outputs,
        "status": {"status_str": "success" if success else "error", "completed": success,
                   "messages": status_messages(task, prompt_id)},
        "meta": {node: node_meta(task, node) for node in outputs},
    }
