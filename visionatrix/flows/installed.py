"""Which flows a worker can run: every node type of the graph is registered here and every model file it loads is
in the model folders.

Works on flow descriptions in the shape of ``Flow.info()`` (``name``, ``node_types``, ``models`` with each model's
``value`` — the file name the graph asks for — and, for catalog models, ``types`` and ``filename``), which is also
what ``GET /vapi/flows`` returns, so a Database-FS worker (local flow files) and a Server-mode worker (the server's
list) decide alike.

A model with catalog ``types`` is looked for, by ``value`` and by its catalog ``filename``, in every root of those
folders (``VIX_MODELS_DIR`` and the extra model paths); a model without types in every folder and in the models
folder itself.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from visionatrix.models.folders import ModelFolders


def _names(model: Mapping[str, Any]) -> list[str]:
    names = [str(model.get(key) or "") for key in ("value", "filename")]
    return [name for name in dict.fromkeys(names) if name]


def find_model(model: Mapping[str, Any], folders: ModelFolders) -> Path | None:
    """The file of one of a flow's ``models`` entries, or None when it is not found (or its name is unsafe)."""
    kinds = [str(kind) for kind in model.get("types") or ()]
    places = kinds or [*folders.folder_names(), ""]
    for name in _names(model):
        for folder in places:
            found = folders.find(folder, name)
            if found is not None:
                return found
    return None


def missing_models(models: Iterable[Mapping[str, Any]], folders: ModelFolders) -> list[str]:
    """The file names (``value``) of the ``models`` that :func:`find_model` does not find."""
    missing = []
    for model in models:
        if find_model(model, folders) is None:
            missing.append(str(model.get("value") or model.get("filename") or model.get("name", "?")))
    return missing


def needed_files(flows: Iterable[Mapping[str, Any]], folders: ModelFolders) -> list[Path]:
    """The model files the ``flows`` load that are on disk (what ``models orphans`` keeps)."""
    found = (find_model(model, folders) for flow in flows for model in flow.get("models") or ())
    return list(dict.fromkeys(path for path in found if path is not None))


def why_not_runnable(flow: Mapping[str, Any], node_types: Collection[str], folders: ModelFolders) -> list[str]:
    """What this worker lacks to run ``flow``: unknown node types and missing model files (empty: runnable)."""
    problems = [f"node type {name}" for name in flow.get("node_types") or () if name not in node_types]
    problems += [f"model {name}" for name in missing_models(flow.get("models") or (), folders)]
    return problems


def runnable_flows(flows: Iterable[Mapping[str, Any]], node_types: Collection[str],
                   folders: ModelFolders) -> list[str]:
    """Names of the ``flows`` this worker can run, in the given order."""
    return [str(flow["name"]) for flow in flows if not why_not_runnable(flow, node_types, folders)]
