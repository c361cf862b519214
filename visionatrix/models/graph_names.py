"""A graph's model inputs pointed at the files the catalog installed.

A flow names its models as its author had them (``animagineXL40_v4Opt.safetensors``); the catalog recognises that
input by its regexes and installs the model under its own file name (``animagine-xl-4.0-opt.safetensors``). Before a
graph runs, each input a catalog model matches is pointed at the catalog's file when the name the graph gives is not
in the model's folders but the catalog's file is (a file the user placed under the graph's name is left alone).
Entries a model only requires (tokenizers) are no graph inputs and are never written into one. Torch-free.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

from visionatrix.flows.importers.model_refs import CompiledCatalog, derive_models
from visionatrix.models.catalog import ModelsCatalog
from visionatrix.models.folders import ModelFolders

_compiled: dict[int, tuple[ModelsCatalog, CompiledCatalog]] = {}
_lock = threading.Lock()


def _compile(catalog: ModelsCatalog) -> CompiledCatalog:
    """The catalog's regexes compiled once per catalog object (the last few kept)."""
    with _lock:
        kept = _compiled.get(id(catalog))
        if kept is None or kept[0] is not catalog:
            if len(_compiled) > 4:
                _compiled.clear()
            kept = (catalog, CompiledCatalog(catalog.raw))
            _compiled[id(catalog)] = kept
        return kept[1]


def installed_names(graph: dict[str, Any], catalog: ModelsCatalog, folders: ModelFolders,
                    ) -> tuple[dict[str, Any], list[tuple[str, str, str, str]]]:
    """``graph`` (a copy when anything changes) and the changes ``(node_id, input, old, new)``."""
    changes: list[tuple[str, str, str, str]] = []
    for ref in derive_models(graph, _compile(catalog), implied=False):
        if not ref.in_catalog or ref.implied_by or not ref.node_id or ref.name not in catalog:
            continue
        model = catalog.get(ref.name)
        old = str(ref.value)
        if old == model.filename or not all(model.folders):
            continue
        if any(folders.find(folder, old) is not None for folder in model.folders):
            continue
        if any(folders.find(folder, model.filename) is not None for folder in model.folders):
            changes.append((ref.node_id, ref.input, old, model.filename))
    if not changes:
        return graph, changes
    graph = copy.deepcopy(graph)
    for node_id, input_name, _old, new in changes:
        graph[node_id]["inputs"][input_name] = new
    return graph, changes
