"""Flow metadata of a Visionatrix-annotated graph (visionatrix.md §4.2).

Read from the inputs of the first ``VixUiWorkflowMetadata`` node, or from the JSON text of a node titled
``WF_META``; ``tags`` and ``requires`` are JSON lists in a string. ``WF_SUBFLOWS`` holds a JSON list of sub-flows.
"""

from __future__ import annotations

import json
from typing import Any

from visionatrix.errors import InvalidFlow
from visionatrix.flows.graph import Graph, is_link, title_of
from visionatrix.flows.importers.vix_params import METADATA_CLASS

METADATA_FIELDS = (
    "name",
    "display_name",
    "description",
    "version",
    "author",
    "license",
    "homepage",
    "documentation",
    "tags",
    "requires",
    "is_seed_supported",
    "is_count_supported",
    "is_translations_supported",
    "is_macos_supported",
    "hidden",
    "required_memory_gb",
)
TEXT_INPUTS = ("text", "value", "string")


def find_metadata(graph: Graph) -> dict[str, Any] | None:
    """The metadata fields the graph carries (only those the manifest knows), or None when it has none."""
    for node_id, node in graph.items():
        inputs = node.get("inputs", {})
        if node["class_type"] == METADATA_CLASS:
            raw = {key: value for key, value in inputs.items() if not is_link(value)}
            return _normalise(node_id, raw)
        if title_of(node) == "WF_META":
            return _normalise(node_id, _json_text(node_id, node, "WF_META", dict))
    return None


def find_sub_flows(graph: Graph) -> list[dict[str, Any]]:
    """The sub-flow list of a ``WF_SUBFLOWS`` node (empty when there is none)."""
    for node_id, node in graph.items():
        if title_of(node) == "WF_SUBFLOWS":
            items = _json_text(node_id, node, "WF_SUBFLOWS", list)
            if not all(isinstance(item, dict) for item in items):
                raise InvalidFlow(f"node {node_id} (WF_SUBFLOWS): every sub-flow must be a JSON object")
            return items
    return []


def _json_text(node_id: str, node: dict[str, Any], label: str, expected: type) -> Any:
    inputs = node.get("inputs", {})
    text = next((inputs[key] for key in TEXT_INPUTS if isinstance(inputs.get(key), str)), None)
    if text is None:
        raise InvalidFlow(f"node {node_id} ({label}) has no text input holding JSON")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidFlow(
            f"node {node_id} ({label}): not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(data, expected):
        raise InvalidFlow(f"node {node_id} ({label}): expected a JSON {expected.__name__}, got {type(data).__name__}")
    return data


def _normalise(node_id: str, raw: dict[str, Any]) -> dict[str, Any]:
    meta = {key: raw[key] for key in METADATA_FIELDS if key in raw and raw[key] is not None}
    for key in ("tags", "requires"):
        value = meta.get(key)
        if isinstance(value, str):
            meta[key] = _json_list(node_id, key, value)
    if meta.get("required_memory_gb") == "":
        del meta["required_memory_gb"]
    return meta


def _json_list(node_id: str, key: str, text: str) -> list[Any]:
    if not text.strip():
        return []
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidFlow(f"node {node_id} metadata {key!r}: not a JSON list: {exc.msg}") from exc
    if not isinstance(value, list):
        raise InvalidFlow(f"node {node_id} metadata {key!r}: expected a JSON list, got {type(value).__name__}")
    return value
