"""Loading a flow from any of the formats Visionatrix accepts; ``load_flow`` detects which one it is given.

* ``{"manifest": {...}, "graph": {...}}`` — a plain API graph with an explicit manifest (``explicit``);
* ``{"nodes": [...], "links": [...]}`` — a ComfyUI UI workflow, converted to an API graph (``ui_workflow``) and
  then read like the next one;
* ``{node_id: {"class_type", "inputs", "_meta"}}`` — a Visionatrix-annotated API graph (``annotated``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from visionatrix.errors import InvalidFlow
from visionatrix.flows.flow import Flow
from visionatrix.flows.graph import looks_like_api_graph
from visionatrix.flows.importers import annotated, explicit, ui_workflow
from visionatrix.flows.importers.model_refs import Catalog, CompiledCatalog
from visionatrix.flows.importers.source import read_json_file
from visionatrix.flows.node_specs import ObjectInfo

__all__ = ["CompiledCatalog", "detect_format", "load_flow"]


def detect_format(data: Any) -> str:
    """``"explicit"``, ``"ui"`` or ``"api"``; raises :class:`InvalidFlow` for anything else."""
    if explicit.is_explicit(data):
        return "explicit"
    if ui_workflow.looks_like_ui_workflow(data):
        return "ui"
    if looks_like_api_graph(data):
        return "api"
    if isinstance(data, dict) and data and all(isinstance(node, dict) for node in data.values()):
        return "api"  # node objects without class_type: let the graph check name the node
    if isinstance(data, dict):
        what = "an empty object" if not data else f"an object with keys {sorted(map(str, data))[:5]}"
        raise InvalidFlow(
            f"not a flow: got {what}; expected an API graph of nodes with class_type, "
            "a UI workflow with 'nodes' and 'links', or {'manifest', 'graph'}"
        )
    raise InvalidFlow(f"not a flow: expected a JSON object, got {type(data).__name__}")


def load_flow(
    source: str | Path | Mapping[str, Any],
    object_info: ObjectInfo,
    *,
    models_catalog: Catalog | CompiledCatalog | None = None,
    name: str | None = None,
) -> Flow:
    """Load a flow from a file path or already-parsed JSON data.

    ``object_info`` describes the node classes available (used for UI conversion, aspect-ratio choices, outputs,
    required inputs and ``missing_node_types``); ``models_catalog`` (Visionatrix's catalog format) adds catalog
    entries to the flow's models; ``name`` names a flow that has no metadata node (default: the file's stem).
    """
    path: Path | None = None
    if isinstance(source, str | Path):
        path = Path(source)
        data = read_json_file(path)
        where = str(path)
    elif isinstance(source, Mapping):
        data = copy.deepcopy(dict(source))
        where = "flow"
    else:
        raise InvalidFlow(f"cannot load a flow from a {type(source).__name__}; give a path or a JSON object")
    catalog = _compiled(models_catalog)
    kind = detect_format(data)
    if kind == "explicit":
        return explicit.import_explicit(data, object_info, catalog=catalog, source=path, where=where)
    warnings: list[str] = []
    if kind == "ui":
        conversion = ui_workflow.convert_ui_workflow(data, object_info)
        data, warnings = conversion.graph, conversion.warnings
    return annotated.import_annotated(
        data, object_info, catalog=catalog, name=name, source=path, warnings=warnings, where=where
    )


def _compiled(models_catalog: Catalog | CompiledCatalog | None) -> CompiledCatalog | None:
    if models_catalog is None or isinstance(models_catalog, CompiledCatalog):
        return models_catalog
    if not isinstance(models_catalog, Mapping):
        raise InvalidFlow(f"models catalog must be an object of entries, got {type(models_catalog).__name__}")
    return CompiledCatalog(models_catalog)
