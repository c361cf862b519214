"""A flow: its manifest plus the ComfyUI API graph it runs, and what the import found missing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visionatrix.flows.graph import Graph
from visionatrix.flows.manifest import FlowManifest

_INFO_INPUT_FIELDS = (
    "name",
    "type",
    "display_name",
    "optional",
    "advanced",
    "hidden",
    "order",
    "default",
    "min",
    "max",
    "step",
    "integer",
    "options",
    "source_input_name",
    "translatable",
    "dynamic_lora",
    "trigger_words",
)
_ALWAYS = frozenset({"name", "type", "display_name", "optional", "default"})


@dataclass
class Flow:
    """``manifest`` describes the flow; ``graph`` is the API-format graph with its default values."""

    manifest: FlowManifest
    graph: Graph
    missing_node_types: list[str] = field(default_factory=list)
    """Classes the graph uses that the node registry (``object_info``) does not know."""
    warnings: list[str] = field(default_factory=list)
    """Things the import could not do exactly (e.g. widgets of an unknown node type that were dropped)."""
    source: Path | None = None
    node_info: dict[str, Any] = field(default_factory=dict, repr=False)
    """The ``object_info`` entries of the classes the graph uses (to know required inputs when pruning)."""

    @property
    def name(self) -> str:
        return self.manifest.name

    def info(self) -> dict[str, Any]:
        """The JSON summary ``flow-info`` prints."""
        m = self.manifest
        inputs = []
        for item in m.inputs:
            data = item.model_dump(mode="json", include=set(_INFO_INPUT_FIELDS))
            inputs.append(
                {key: data[key] for key in _INFO_INPUT_FIELDS if key in _ALWAYS or data.get(key) not in (None, [])}
            )
        return {
            "name": m.name,
            "display_name": m.display_name,
            "description": m.description,
            "version": m.version,
            "author": m.author,
            "tags": list(m.tags),
            "requires": list(m.requires),
            "is_seed_supported": m.is_seed_supported,
            "is_count_supported": m.is_count_supported,
            "required_memory_gb": m.required_memory_gb,
            "inputs": inputs,
            "outputs": [output.model_dump(mode="json") for output in m.outputs],
            "node_types": list(m.node_types),
            "missing_node_types": list(self.missing_node_types),
            "models": [model.model_dump(mode="json", exclude_none=True) for model in m.models],
            "warnings": list(self.warnings),
        }
