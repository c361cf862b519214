"""Fixtures for the flows tests: an ``object_info`` built from our node packs, the Visionatrix corpus, helpers.

``pack_object_info`` imports the packs under ``comfy_nodes/`` that exist and describes their classes in the
``/object_info`` shape with the small helper below (to be replaced by ``NodeRegistry`` once it is settled).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

CORPUS = Path(__file__).resolve().parents[4] / "shared" / "corpus"
VIXFLOWS = CORPUS / "vixflows"
PACKS = ("comfy_nodes.vix_ui", "comfy_nodes.primitives", "comfy_nodes.image_io", "comfy_nodes.image_ops")


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


@pytest.fixture(scope="session")
def pack_object_info() -> dict[str, dict[str, Any]]:
    """``object_info`` of every class our packs export (packs that cannot be imported yet are skipped)."""
    info: dict[str, dict[str, Any]] = {}
    for pack_name in PACKS:
        try:
            pack = importlib.import_module(pack_name)
        except ImportError:
            continue
        titles = getattr(pack, "NODE_DISPLAY_NAME_MAPPINGS", {})
        for class_name, node_class in pack.NODE_CLASS_MAPPINGS.items():
            info[class_name] = describe_class(class_name, node_class, titles.get(class_name))
    return info


@pytest.fixture(scope="session")
def models_catalog() -> dict[str, Any]:
    return json.loads((CORPUS / "models_catalog.json").read_text())


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
