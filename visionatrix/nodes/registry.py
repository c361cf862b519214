"""The node registry: every node type the executor may run, with where it came from.

A registry is an object built by the caller (``__main__`` or a test) and passed down; there is no module-level
table. :meth:`NodeRegistry.load_packs` imports packs from folders (see :mod:`visionatrix.nodes.packs`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visionatrix.errors import NotFound
from visionatrix.nodes import describe as describe_mod
from visionatrix.nodes.v3 import adapter as v3_adapter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeType:
    """One registered node class."""

    name: str
    node_class: type
    display_name: str
    python_module: str
    pack: str


@dataclass
class PackFailure:
    """A pack that could not be imported; kept so ``nodes`` and the UI can show why."""

    pack: str
    path: str
    error: str


@dataclass
class NodeRegistry:
    """Node types by class name; first registration of a core name wins over later third-party packs."""

    _types: dict[str, NodeType] = field(default_factory=dict)
    failures: list[PackFailure] = field(default_factory=list)

    def register(
        self,
        name: str,
        node_class: type,
        *,
        display_name: str | None = None,
        python_module: str = "nodes",
        pack: str = "",
        core: bool = False,
    ) -> None:
        """Add one node type; a third-party pack cannot replace a core node, later packs replace earlier ones.
        A V3 node class (``comfy_api.latest.io.ComfyNode``) is registered in its V1 shape."""
        if v3_adapter.is_v3(node_class):
            node_class = v3_adapter.to_v1(node_class)
        existing = self._types.get(name)
        if existing is not None and existing.python_module.startswith("comfy_nodes.") and not core:
            log.warning("pack %s: node %s is a core node and was not overridden", pack, name)
            return
        self._types[name] = NodeType(name, node_class, display_name or name, python_module, pack)

    def register_mappings(
        self,
        class_mappings: dict[str, type],
        display_names: dict[str, str] | None,
        *,
        python_module: str,
        pack: str,
        core: bool = False,
    ) -> int:
        """Register a pack's ``NODE_CLASS_MAPPINGS``; returns how many types were added."""
        display_names = display_names or {}
        for name, node_class in class_mappings.items():
            self.register(
                name,
                node_class,
                display_name=display_names.get(name),
                python_module=python_module,
                pack=pack,
                core=core,
            )
        return len(class_mappings)

    def load_packs(self, dirs: Iterable[Path], *, core_dir: Path | None = None) -> None:
        """Import every pack in ``core_dir`` (our ``comfy_nodes/``) and then in each of ``dirs``."""
        from visionatrix.nodes import packs

        if core_dir is not None:
            packs.load_dir(self, core_dir, core=True)
        for extra in dirs:
            packs.load_dir(self, Path(extra), core=False)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[NodeType]:
        return iter(self._types.values())

    def __len__(self) -> int:
        return len(self._types)

    def get(self, name: str) -> NodeType:
        try:
            return self._types[name]
        except KeyError:
            raise NotFound("node type", name) from None

    def node_class(self, name: str) -> type:
        return self.get(name).node_class

    def names(self) -> list[str]:
        return sorted(self._types)

    def describe(self, name: str) -> dict[str, Any]:
        """The ``/object_info`` entry of one node type."""
        node = self.get(name)
        return describe_mod.describe(node.name, node.node_class, node.display_name, node.python_module)

    def object_info(self) -> dict[str, dict[str, Any]]:
        """Every node type in ``/object_info``'s shape, a node whose description raises is logged and left out."""
        info: dict[str, dict[str, Any]] = {}
        for name in self.names():
            try:
                info[name] = self.describe(name)
            except Exception:
                log.exception("node %s: INPUT_TYPES failed; left out of object_info", name)
        return info
