"""The ``comfy_api`` and ``comfy_execution`` stand-in modules, and loading a V3 pack's ``comfy_entrypoint``."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from visionatrix.nodes.v3 import adapter, graph_utils, io, ui


def stand_ins() -> dict[str, ModuleType]:
    """``sys.modules`` entries for ``comfy_api`` (``latest``, ``v0_0_2``, ``latest.io``/``_io``, ``latest.ui``/
    ``_ui``) and ``comfy_execution.graph_utils``."""
    latest = ModuleType("comfy_api.latest")
    latest.__path__ = []  # type: ignore[attr-defined]
    latest.io = io  # type: ignore[attr-defined]
    latest.IO = io  # type: ignore[attr-defined]
    latest.ui = ui  # type: ignore[attr-defined]
    latest.UI = ui  # type: ignore[attr-defined]
    latest.ComfyExtension = io.ComfyExtension  # type: ignore[attr-defined]
    root = ModuleType("comfy_api")
    root.__path__ = []  # type: ignore[attr-defined]
    root.latest = latest  # type: ignore[attr-defined]
    root.v0_0_2 = latest  # type: ignore[attr-defined]
    execution = ModuleType("comfy_execution")
    execution.__path__ = []  # type: ignore[attr-defined]
    execution.graph_utils = graph_utils  # type: ignore[attr-defined]
    modules = {"comfy_api": root, "comfy_execution": execution, "comfy_execution.graph_utils": graph_utils}
    for version in ("latest", "v0_0_2"):
        modules.update({f"comfy_api.{version}": latest, f"comfy_api.{version}.io": io,
                        f"comfy_api.{version}._io": io, f"comfy_api.{version}.ui": ui,
                        f"comfy_api.{version}._ui": ui})
    return modules


def entrypoint_nodes(entrypoint: Any) -> tuple[dict[str, type], dict[str, str]]:
    """Call a pack's ``comfy_entrypoint()`` (sync or async) and its extension's ``on_load``/``get_node_list``;
    returns ``NODE_CLASS_MAPPINGS``- and ``NODE_DISPLAY_NAME_MAPPINGS``-shaped dicts keyed by ``node_id``."""
    extension = adapter.run_sync(entrypoint())
    on_load = getattr(extension, "on_load", None)
    if on_load is not None:
        adapter.run_sync(on_load())
    node_list = adapter.run_sync(extension.get_node_list())
    mappings: dict[str, type] = {}
    display_names: dict[str, str] = {}
    for node_class in node_list:
        schema = node_class.define_schema()
        mappings[schema.node_id] = node_class
        if schema.display_name:
            display_names[schema.node_id] = schema.display_name
    return mappings, display_names
