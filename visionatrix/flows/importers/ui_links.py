"""Links of a ComfyUI UI-format workflow and where each one really comes from (comfyui_api.md §3.2, §3.3).

A link is followed upstream through ``Reroute`` nodes and bypassed nodes (mode 4: the bypassed node forwards the
input whose type matches the link's type, same slot index preferred); it ends on a real node's output, on the
constant of a ``PrimitiveNode``, on a muted node (mode 2) or nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from visionatrix.errors import InvalidFlow
from visionatrix.executor.types import types_compatible

MODE_MUTED = 2
MODE_BYPASS = 4
NOTE_TYPES = frozenset({"Note", "MarkdownNote"})
VIRTUAL_TYPES = frozenset({"PrimitiveNode", "Reroute"})


@dataclass(frozen=True)
class UiLink:
    id: int
    origin_id: str
    origin_slot: int
    target_id: str
    target_slot: int
    type: str


@dataclass(frozen=True)
class Resolved:
    """Where a link ends: ``link`` is ``[node_id, slot]`` for a real node, else ``value`` holds a constant."""

    link: list[Any] | None = None
    value: Any = None
    muted: bool = False


def parse_links(raw: Any) -> dict[int, UiLink]:
    """Links given as schema-0.4 arrays ``[id, origin, slot, target, slot, type]`` or schema-1 objects."""
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise InvalidFlow(f"workflow: 'links' must be a list, got {type(raw).__name__}")
    links: dict[int, UiLink] = {}
    for index, item in enumerate(raw):
        if item is None:
            continue
        try:
            if isinstance(item, list):
                link_id, origin, origin_slot, target, target_slot = item[:5]
                link_type = item[5] if len(item) > 5 else "*"
            elif isinstance(item, dict):
                link_id, origin, origin_slot = item["id"], item["origin_id"], item["origin_slot"]
                target, target_slot, link_type = item["target_id"], item["target_slot"], item.get("type", "*")
            else:
                raise TypeError(type(item).__name__)
            link = UiLink(int(link_id), str(origin), int(origin_slot), str(target), int(target_slot), str(link_type))
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidFlow(f"workflow: link #{index} is malformed: {item!r}") from exc
        links[link.id] = link
    return links


class LinkResolver:
    """Follows links through the workflow's pass-through nodes."""

    def __init__(self, nodes: dict[str, dict[str, Any]], links: dict[int, UiLink]) -> None:
        self.nodes = nodes
        self.links = links

    def resolve(self, link_id: Any) -> Resolved | None:
        return self._resolve(link_id, set())

    def _resolve(self, link_id: Any, seen: set[int]) -> Resolved | None:
        if not isinstance(link_id, int) or link_id in seen:
            return None
        seen.add(link_id)
        link = self.links.get(link_id)
        origin = self.nodes.get(link.origin_id) if link else None
        if link is None or origin is None:
            return None
        node_type = origin.get("type")
        if node_type == "Reroute":
            slots = origin.get("inputs") or []
            return self._resolve(slots[0].get("link"), seen) if slots else None
        if node_type == "PrimitiveNode":
            values = origin.get("widgets_values")
            return Resolved(value=values[0]) if isinstance(values, list) and values else None
        if node_type in NOTE_TYPES:
            return None
        mode = origin.get("mode", 0)
        if mode == MODE_MUTED:
            return Resolved(muted=True)
        if mode == MODE_BYPASS:
            slot = self._bypass_input(origin, link)
            return self._resolve(slot.get("link"), seen) if slot else None
        return Resolved(link=[link.origin_id, link.origin_slot])

    @staticmethod
    def _bypass_input(node: dict[str, Any], link: UiLink) -> dict[str, Any] | None:
        """The input a bypassed node forwards for ``link``: same slot index if its type fits, else the first fit."""
        slots = [slot for slot in node.get("inputs") or [] if isinstance(slot, dict)]
        if link.origin_slot < len(slots) and types_compatible(str(slots[link.origin_slot].get("type", "*")), link.type):
            return slots[link.origin_slot]
        return next((slot for slot in slots if types_compatible(str(slot.get("type", "*")), link.type)), None)
