"""Shared helpers for the flows tests: the Visionatrix corpus, node builders, describing classes as object_info."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.corpus import CORPUS

VIXFLOWS = CORPUS / "vixflows"


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    return value


def describe_class(name: str, node_class: type, display_name: str | None = None) -> dict[str, Any]:
    """One class in the ``/object_info`` shape (comfyui_api.md §4)."""
    raw = node_class.INPUT_TYPES()
    sections = {key: _plain(dict(raw[key])) for key in ("required", "optional", "hidden") if raw.get(key)}
    outputs = _plain(list(getattr(node_class, "RETURN_TYPES", ())))
    return {
        "input": sections,
        "input_order": {key: list(value) for key, value in sections.items() if key != "hidden"},
        "output": outputs,
        "output_is_list": list(getattr(node_class, "OUTPUT_IS_LIST", [False] * len(outputs))),
        "output_name": list(getattr(node_class, "RETURN_NAMES", None) or outputs),
        "name": name,
        "display_name": display_name or name,
        "description": getattr(node_class, "DESCRIPTION", ""),
        "category": getattr(node_class, "CATEGORY", "sd"),
        "output_node": getattr(node_class, "OUTPUT_NODE", False) is True,
        "python_module": node_class.__module__,
    }


def corpus_paths() -> list[Path]:
    return sorted(VIXFLOWS.glob("*.json"))


def raw_corpus_flow(stem: str) -> dict[str, Any]:
    return json.loads((VIXFLOWS / f"{stem}.json").read_text())


def node(class_type: str, inputs: dict[str, Any] | None = None, title: str | None = None) -> dict[str, Any]:
    """An API-graph node."""
    result: dict[str, Any] = {"class_type": class_type, "inputs": dict(inputs or {})}
    if title is not None:
        result["_meta"] = {"title": title}
    return result


def metadata_node(name: str = "test_flow", **extra: Any) -> dict[str, Any]:
    inputs = {"name": name, "display_name": "Test Flow", "version": "1.0.0", "tags": '["a"]', "requires": "[]"}
    inputs.update(extra)
    return node("VixUiWorkflowMetadata", inputs)
