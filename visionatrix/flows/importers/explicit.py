"""Import of a plain API graph with an explicit manifest: ``{"manifest": {...}, "graph": {...}}``.

The manifest is validated as given; ``node_types`` is always recomputed from the graph, ``outputs`` and
``models`` are derived when the manifest leaves them out. Every binding must name an existing node and an input
that node has (in the graph, or in ``object_info`` for its class).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from visionatrix.errors import InvalidFlow
from visionatrix.flows import node_specs
from visionatrix.flows.flow import Flow
from visionatrix.flows.graph import Graph, check_api_graph
from visionatrix.flows.importers import model_refs, outputs
from visionatrix.flows.importers.annotated import missing_node_types, used_node_info
from visionatrix.flows.importers.messages import validation_message
from visionatrix.flows.manifest import FlowManifest
from visionatrix.flows.node_specs import ObjectInfo


def is_explicit(data: Any) -> bool:
    return isinstance(data, dict) and "manifest" in data and "graph" in data


def import_explicit(
    data: dict[str, Any],
    object_info: ObjectInfo,
    *,
    catalog: model_refs.CompiledCatalog | None = None,
    source: Path | None = None,
    where: str = "flow",
) -> Flow:
    extra = sorted(set(data) - {"manifest", "graph"})
    if extra:
        raise InvalidFlow(f"{where}: unexpected top-level keys {extra} (expected only 'manifest' and 'graph')")
    graph = check_api_graph(data["graph"], f"{where}: graph")
    raw = data["manifest"]
    if not isinstance(raw, dict):
        raise InvalidFlow(f"{where}: manifest must be an object, got {type(raw).__name__}")
    raw = dict(raw)
    raw["node_types"] = sorted({node["class_type"] for node in graph.values()})
    raw.setdefault("outputs", [o.model_dump() for o in outputs.derive_outputs(graph, object_info)])
    raw.setdefault("models", [m.model_dump() for m in model_refs.derive_models(graph, catalog)])
    try:
        manifest = FlowManifest.model_validate(raw)
    except ValidationError as exc:
        raise InvalidFlow(f"{where}: invalid manifest: {validation_message(exc, 'manifest')}") from exc
    problems = binding_problems(manifest, graph, object_info)
    if problems:
        raise InvalidFlow(f"{where}: invalid manifest: " + "; ".join(problems))
    return Flow(
        manifest=manifest,
        graph=graph,
        missing_node_types=missing_node_types(graph, object_info),
        source=source,
        node_info=used_node_info(graph, object_info),
    )


def binding_problems(manifest: FlowManifest, graph: Graph, object_info: ObjectInfo) -> list[str]:
    """Every binding or output that points at a node or input the graph does not have."""
    problems = []
    for param in manifest.inputs:
        for binding in param.bindings:
            node = graph.get(binding.node_id)
            if node is None:
                problems.append(f"parameter {param.name!r} is bound to missing node {binding.node_id!r}")
                continue
            known_in_graph = binding.input in node.get("inputs", {})
            known_in_info = node_specs.input_spec(object_info, node["class_type"], binding.input) is not None
            if not (known_in_graph or known_in_info):
                problems.append(
                    f"parameter {param.name!r} is bound to node {binding.node_id!r} ({node['class_type']}), "
                    f"which has no input {binding.input!r}"
                )
        if param.source_input_name and manifest.input(param.source_input_name) is None:
            problems.append(f"parameter {param.name!r} names unknown source_input_name {param.source_input_name!r}")
    for output in manifest.outputs:
        if output.node_id not in graph:
            problems.append(f"output node {output.node_id!r} is not in the graph")
    return problems
