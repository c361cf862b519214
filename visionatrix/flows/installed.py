"""Which flows a worker can run: every node type of the graph is registered here and every model file it loads is
in the models folder.

Works on flow descriptions in the shape of ``Flow.info()`` (``name``, ``node_types``, ``models`` with each model's
``value`` — the file name the graph asks for — and catalog ``types``), which is also what ``GET /vapi/flows``
returns, so a Database-FS worker (local flow files) and a Server-mode worker (the server's list) decide alike.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any


def missing_models(models: Iterable[Mapping[str, Any]], models_dir: Path) -> list[str]:
    """The model files of ``models`` found neither in ``models_dir/<type>/`` (for each catalog type), nor in any
    direct subfolder of ``models_dir``, nor in ``models_dir`` itself."""
    missing = []
    subfolders = [path for path in models_dir.iterdir() if path.is_dir()] if models_dir.is_dir() else []
    for model in models:
        value = str(model.get("value") or model.get("filename") or "")
        if not value or Path(value).is_absolute() or ".." in Path(value).parts:
            missing.append(value or str(model.get("name", "?")))
            continue
        places = [models_dir / str(kind) for kind in model.get("types") or ()] + subfolders + [models_dir]
        if not any((place / value).is_file() for place in places):
            missing.append(value)
    return missing


def why_not_runnable(flow: Mapping[str, Any], node_types: Collection[str], models_dir: Path) -> list[str]:
    """What this worker lacks to run ``flow``: unknown node types and missing model files (empty: runnable)."""
    problems = [f"node type {name}" for name in flow.get("node_types") or () if name not in node_types]
    problems += [f"model {name}" for name in missing_models(flow.get("models") or (), models_dir)]
    return problems


def runnable_flows(flows: Iterable[Mapping[str, Any]], node_types: Collection[str], models_dir: Path) -> list[str]:
    """Names of the ``flows`` this worker can run, in the given order."""
    return [str(flow["name"]) for flow in flows if not why_not_runnable(flow, node_types, models_dir)]
