"""Import of a Visionatrix-annotated ComfyUI API graph: the manifest is derived from the graph's markers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from visionatrix.errors import InvalidFlow
from visionatrix.flows.flow import Flow
from visionatrix.flows.graph import Graph, check_api_graph
from visionatrix.flows.importers import model_refs, outputs, vix_metadata, vix_params
from visionatrix.flows.importers.messages import validation_message
from visionatrix.flows.manifest import FlowManifest
from visionatrix.flows.node_specs import ObjectInfo


def missing_node_types(graph: Graph, object_info: ObjectInfo) -> list[str]:
    """Classes used by ``graph`` that ``object_info`` does not describe, sorted."""
    return sorted({node["class_type"] for node in graph.values() if node["class_type"] not in object_info})


def used_node_info(graph: Graph, object_info: ObjectInfo) -> dict[str, Any]:
    """The ``object_info`` entries of the classes ``graph`` uses."""
    used = {node["class_type"] for node in graph.values()}
    return {class_type: object_info[class_type] for class_type in sorted(used) if class_type in object_info}


def import_annotated(
    graph: Any,
    object_info: ObjectInfo,
    *,
    catalog: model_refs.CompiledCatalog | None = None,
    name: str | None = None,
    source: Path | None = None,
    warnings: list[str] | None = None,
    where: str = "graph",
) -> Flow:
    """Build a :class:`Flow` from an API graph with ``VixUi*`` nodes, ``input;`` titles and metadata.

    Without a metadata node the flow is named ``name`` (or the file's stem); with neither it is refused.
    """
    graph = check_api_graph(graph, where)
    warnings = list(warnings or [])
    meta = vix_metadata.find_metadata(graph)
    if meta is None:
        fallback = name or (source.stem if source else None)
        if not fallback:
            raise InvalidFlow(f"{where}: no VixUiWorkflowMetadata node (or WF_META node) and no flow name given")
        meta = {"name": fallback, "display_name": fallback}
    elif name:
        meta["name"] = name
    if not meta.get("name"):
        raise InvalidFlow(f"{where}: the flow metadata has no name")
    data = {
        **meta,
        "inputs": vix_params.derive_inputs(graph, object_info, warnings),
        "outputs": outputs.derive_outputs(graph, object_info),
        "node_types": sorted({node["class_type"] for node in graph.values()}),
        "models": model_refs.derive_models(graph, catalog),
        "sub_flows": vix_metadata.find_sub_flows(graph),
    }
    try:
        manifest = FlowManifest.model_validate(data)
    except ValidationError as exc:
        raise InvalidFlow(f"{where}: invalid flow metadata: {validation_message(exc)}") from exc
    return Flow(
        manifest=manifest,
        graph=graph,
        missing_node_types=missing_node_types(graph, object_info),
        warnings=warnings,
        source=source,
        node_info=used_node_info(graph, object_info),
    )
