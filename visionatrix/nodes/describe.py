"""Describe a node class in the shape of ComfyUI's ``/object_info`` entry (comfyui_api.md §4)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _jsonable(value: Any) -> Any:
    """Turn tuples into lists (recursively) so the description is plain JSON."""
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def input_types(node_class: type) -> dict[str, dict[str, Any]]:
    """The node's ``INPUT_TYPES()`` with every section present (possibly empty)."""
    raw = node_class.INPUT_TYPES() if hasattr(node_class, "INPUT_TYPES") else {}
    return {section: dict(raw.get(section) or {}) for section in ("required", "optional", "hidden")}


def node_input_types(node_class: type, inputs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``input_types`` of one node of a graph: a class whose inputs follow the node's values (a V3 node with
    ``Autogrow``, ``DynamicCombo`` or ``MatchType`` inputs: ``_vix_input_types(inputs)``) gets them for
    ``inputs``; any other class its ``INPUT_TYPES()``."""
    live = getattr(node_class, "_vix_input_types", None)
    if live is None:
        return input_types(node_class)
    raw = live(dict(inputs))
    return {section: dict(raw.get(section) or {}) for section in ("required", "optional", "hidden")}


def has_live_inputs(node_class: type) -> bool:
    """Whether :func:`node_input_types` depends on the node's values."""
    return hasattr(node_class, "_vix_input_types")


def describe(name: str, node_class: type, display_name: str | None, python_module: str) -> dict[str, Any]:
    """The ``/object_info`` entry of ``node_class`` registered as ``name``."""
    inputs = input_types(node_class)
    outputs = [_jsonable(t) for t in getattr(node_class, "RETURN_TYPES", ())]
    output_is_list = list(getattr(node_class, "OUTPUT_IS_LIST", [False] * len(outputs)))
    info: dict[str, Any] = {
        "input": {k: _jsonable(v) for k, v in inputs.items() if v or k == "required"},
        "input_order": {k: list(v) for k, v in inputs.items() if v and k != "hidden"},
        "is_input_list": bool(getattr(node_class, "INPUT_IS_LIST", False)),
        "output": outputs,
        "output_is_list": output_is_list,
        "output_name": list(getattr(node_class, "RETURN_NAMES", None) or outputs),
        "name": name,
        "display_name": display_name or name,
        "description": getattr(node_class, "DESCRIPTION", "") or "",
        "python_module": python_module,
        "category": getattr(node_class, "CATEGORY", "sd") or "sd",
        "output_node": getattr(node_class, "OUTPUT_NODE", False) is True,
        "has_intermediate_output": bool(getattr(node_class, "HAS_INTERMEDIATE_OUTPUT", False)),
        "search_aliases": list(getattr(node_class, "SEARCH_ALIASES", [])),
    }
    if getattr(node_class, "OUTPUT_MATCHTYPES", None):
        info["output_matchtypes"] = list(node_class.OUTPUT_MATCHTYPES)
    if hasattr(node_class, "OUTPUT_TOOLTIPS"):
        info["output_tooltips"] = list(node_class.OUTPUT_TOOLTIPS)
    for flag, attr in (("deprecated", "DEPRECATED"), ("experimental", "EXPERIMENTAL"), ("dev_only", "DEV_ONLY")):
        if getattr(node_class, attr, False):
            info[flag] = True
    if getattr(node_class, "API_NODE", False):
        info["api_node"] = True
    return info
