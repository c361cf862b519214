"""Import node packs from a folder, following ComfyUI's custom-node discovery rules (comfyui_api.md §5.3).

Each entry of the folder is a pack: a package directory (imported from its ``__init__.py``) or a single ``.py``
file. A pack exports ``NODE_CLASS_MAPPINGS`` (V1), ``comfy_entrypoint`` (V3: its ``ComfyExtension``'s node list,
registered by ``node_id``), or both. ``__pycache__``, hidden names, names ending in ``.disabled`` and other files
are skipped. A pack that fails to import is logged, recorded in ``registry.failures`` and skipped; loading goes on
with the next pack.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from visionatrix.nodes import comfy_compat
from visionatrix.nodes.v3 import modules as v3_modules

if TYPE_CHECKING:
    from visionatrix.nodes.registry import NodeRegistry

log = logging.getLogger(__name__)


def pack_entries(folder: Path) -> list[Path]:
    """The pack paths in ``folder``, in name order."""
    if not folder.is_dir():
        return []
    entries = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith((".", "_")) or entry.name.endswith(".disabled"):
            continue
        if (entry.is_dir() and (entry / "__init__.py").is_file()) or (entry.is_file() and entry.suffix == ".py"):
            entries.append(entry)
    return entries


def _module_name(entry: Path, core: bool) -> str:
    stem = entry.stem if entry.is_file() else entry.name
    if core:
        return f"comfy_nodes.{stem}"
    digest = hashlib.sha1(str(entry.resolve()).encode()).hexdigest()[:8]
    return f"vix_custom_nodes.{stem.replace('-', '_').replace('.', '_')}_{digest}"


def import_pack(entry: Path, module_name: str) -> ModuleType:
    """Import one pack under ``module_name`` (a package's relative imports work)."""
    if module_name in sys.modules:
        return sys.modules[module_name]
    if entry.is_dir():
        spec = importlib.util.spec_from_file_location(
            module_name, entry / "__init__.py", submodule_search_locations=[str(entry)]
        )
    else:
        spec = importlib.util.spec_from_file_location(module_name, entry)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {entry}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def load_dir(registry: NodeRegistry, folder: Path, *, core: bool) -> None:
    """Import every pack of ``folder`` into ``registry``."""
    from visionatrix.nodes.registry import PackFailure

    if not folder.is_dir():
        log.warning("nodes folder %s does not exist; skipped", folder)
        return
    if not core:
        comfy_compat.install()
    for entry in pack_entries(folder):
        name = entry.stem if entry.is_file() else entry.name
        started = time.perf_counter()
        module_name = _module_name(entry, core)
        try:
            module = import_pack(entry, module_name)
            mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
            entrypoint = getattr(module, "comfy_entrypoint", None)
            if not isinstance(mappings, dict) and not callable(entrypoint):
                raise ImportError("the pack exports neither a NODE_CLASS_MAPPINGS dict nor comfy_entrypoint")
            python_module = module_name if core else f"custom_nodes.{name}"
            count = 0
            if isinstance(mappings, dict):
                count += registry.register_mappings(mappings, getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None),
                                                    python_module=python_module, pack=name, core=core)
            if callable(entrypoint):  # a V3 pack: comfy_entrypoint() -> ComfyExtension
                v3_mappings, v3_names = v3_modules.entrypoint_nodes(entrypoint)
                count += registry.register_mappings(v3_mappings, v3_names, python_module=python_module, pack=name,
                                                    core=core)
        except Exception as exc:
            log.error("IMPORT FAILED: node pack %s (%s): %s", name, entry, exc)
            registry.failures.append(PackFailure(name, str(entry), "".join(traceback.format_exception_only(exc))))
            continue
        log.debug("loaded node pack %s: %d nodes in %.3f s", name, count, time.perf_counter() - started)
