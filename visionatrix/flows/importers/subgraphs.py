"""Flattening the subgraphs of a ComfyUI UI-format workflow (``definitions.subgraphs``) into one node table.

This reproduces what the official editor queues: a subgraph node (a node whose ``type`` is a subgraph's id) is
replaced by its inner nodes, whose ids become ``"<outer id>:<inner id>"`` (nested: ``"68:12:5"``; an inner id
that collides with another node's is first renumbered as the editor does, see ``subgraph_ids``). Links across
the boundary are joined: an inner input fed by the subgraph's input node (id -10) takes what feeds the subgraph
node's input of that name outside, or, when nothing does and the input carries a widget, the subgraph node's
widget value (``widgets_values``, one per widget input in the definition's order), falling back to the first inner
widget it feeds; an outer input fed by a subgraph node's output takes the inner node linked to the subgraph's
output node (id -20). A muted (2) or bypassed (4) subgraph node at the top level drops its inner nodes and stays in
the table as a pass-through node, so links through it follow ComfyUI's mute and bypass rules (``ui_links``); like
the editor, a muted or bypassed subgraph node nested in another still has its inner nodes queued.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from visionatrix.errors import InvalidFlow
from visionatrix.flows.importers.subgraph_ids import editor_definitions
from visionatrix.flows.importers.ui_links import MODE_BYPASS, MODE_MUTED, UiLink, parse_links

WidgetValue = Callable[[dict[str, Any], str], Any]
MISSING = object()


@dataclass
class _Scope:
    path: tuple[str, ...]
    nodes: dict[str, dict[str, Any]]
    links: dict[int, UiLink]
    definition: dict[str, Any] | None = None
    instance: dict[str, Any] | None = None
    parent: _Scope | None = None

    def exec_id(self, local_id: str) -> str:
        return ":".join((*self.path, local_id))

    def io_id(self, key: str, default: int) -> str:
        io_node = (self.definition or {}).get(key)
        return str(io_node.get("id", default)) if isinstance(io_node, dict) else str(default)


@dataclass
class Flat:
    nodes: dict[str, dict[str, Any]]
    links: dict[int, UiLink]


def subgraph_definitions(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every subgraph definition by id, nested ``definitions`` included, with the inner node ids the editor gives
    them (``subgraph_ids``)."""
    return editor_definitions(data)


def flatten(
    data: dict[str, Any], index_nodes: Callable[[Any, str], dict[str, dict[str, Any]]], widget_value: WidgetValue
) -> Flat:
    """The workflow as one table of nodes keyed by execution id, with links renumbered across it.

    ``index_nodes(nodes, where)`` checks and indexes a node list; ``widget_value(node, name)`` is a plain node's
    value for widget ``name`` (or ``MISSING``).
    """
    return _Flattener(subgraph_definitions(data), index_nodes, widget_value).run(data)


class _Flattener:
    def __init__(self, definitions: dict[str, dict[str, Any]], index_nodes: Any, widget_value: WidgetValue) -> None:
        self.definitions = definitions
        self.index_nodes = index_nodes
        self.widget_value = widget_value
        self.flat = Flat(nodes={}, links={})
        self.scopes: dict[tuple[str, ...], _Scope] = {}

    def run(self, data: dict[str, Any]) -> Flat:
        root = _Scope(
            path=(), nodes=self.index_nodes(data.get("nodes"), "workflow"), links=parse_links(data.get("links"))
        )
        self._walk(root)
        return self.flat

    def _is_subgraph(self, node: dict[str, Any]) -> bool:
        return node["type"] in self.definitions

    def _child(self, scope: _Scope, instance: dict[str, Any]) -> _Scope:
        path = (*scope.path, str(instance["id"]))
        if path not in self.scopes:
            self.scopes[path] = self._new_child(scope, instance, path)
        return self.scopes[path]

    def _new_child(self, scope: _Scope, instance: dict[str, Any], path: tuple[str, ...]) -> _Scope:
        definition = self.definitions[instance["type"]]
        ancestor: _Scope | None = scope
        while ancestor is not None:
            if ancestor.definition is definition:
                raise InvalidFlow(f"workflow: subgraph {definition.get('name') or instance['type']} contains itself")
            ancestor = ancestor.parent
        where = f"workflow: subgraph node {':'.join(path)}"
        return _Scope(
            path=path,
            nodes=self.index_nodes(definition.get("nodes") or [], where),
            links=parse_links(definition.get("links")),
            definition=definition,
            instance=instance,
            parent=scope,
        )

    def _walk(self, scope: _Scope) -> None:
        for local_id, node in scope.nodes.items():
            mode = node.get("mode", 0)
            if not self._is_subgraph(node):
                self._add(scope, local_id, node, node.get("inputs") or [])
                continue
            child = self._child(scope, node)
            if mode in (MODE_MUTED, MODE_BYPASS):
                self._add(scope, local_id, node, self._instance_slots(child))
                if scope.parent is None:
                    continue
            self._walk(child)

    def _instance_slots(self, child: _Scope) -> list[dict[str, Any]]:
        """A pass-through subgraph node's inputs in its definition's order, each with its outer link."""
        slots = []
        for item in (child.definition or {}).get("inputs") or []:
            slots.append(
                {
                    "name": item.get("name"),
                    "type": item.get("type", "*"),
                    "link": self._outer_link(child, item.get("name")),
                }
            )
        return slots

    def _add(self, scope: _Scope, local_id: str, node: dict[str, Any], slots: list[Any]) -> None:
        exec_id = scope.exec_id(local_id)
        inputs: list[Any] = []
        for slot in slots:
            if isinstance(slot, dict) and slot.get("link") is not None:
                slot = {**slot, "link": self._global_link(scope, slot["link"], exec_id, len(inputs))}
            inputs.append(slot)
        self.flat.nodes[exec_id] = {**node, "id": exec_id, "inputs": inputs}

    def _global_link(self, scope: _Scope, link_id: Any, target: str, target_slot: int) -> int | None:
        link = scope.links.get(link_id) if isinstance(link_id, int) else None
        origin = self._origin(scope, link_id, set())
        if link is None or origin is None:
            return None
        new_id = len(self.flat.links) + 1
        if origin[0] == "value":
            const_id = f"~value{new_id}"
            self.flat.nodes[const_id] = {"id": const_id, "type": "PrimitiveNode", "widgets_values": [origin[1]]}
            origin = ("node", const_id, 0)
        self.flat.links[new_id] = UiLink(new_id, origin[1], origin[2], target, target_slot, link.type)
        return new_id

    def _origin(self, scope: _Scope, link_id: Any, seen: set[tuple[tuple[str, ...], int]]) -> tuple | None:
        """``("node", exec_id, slot)``, ``("value", constant)`` or None for where ``link_id`` really starts."""
        link = scope.links.get(link_id) if isinstance(link_id, int) else None
        if link is None or (scope.path, link.id) in seen:
            return None
        seen.add((scope.path, link.id))
        if scope.definition is not None and link.origin_id == scope.io_id("inputNode", -10):
            return self._subgraph_input(scope, link.origin_slot, seen)
        node = scope.nodes.get(link.origin_id)
        if node is None:
            return None
        if self._is_subgraph(node) and node.get("mode", 0) not in (MODE_MUTED, MODE_BYPASS):
            child = self._child(scope, node)
            output_id = child.io_id("outputNode", -20)
            inner = next(
                (
                    item.id
                    for item in child.links.values()
                    if item.target_id == output_id and item.target_slot == link.origin_slot
                ),
                None,
            )
            return self._origin(child, inner, seen)
        return ("node", scope.exec_id(link.origin_id), link.origin_slot)

    def _subgraph_input(self, scope: _Scope, index: int, seen: set) -> tuple | None:
        items = (scope.definition or {}).get("inputs") or []
        if not 0 <= index < len(items) or scope.parent is None:
            return None
        outer = self._outer_link(scope, items[index].get("name"))
        if outer is not None:
            return self._origin(scope.parent, outer, seen)
        value = self._promoted_value(scope, index)
        return None if value is MISSING else ("value", value)

    @staticmethod
    def _outer_link(scope: _Scope, name: Any) -> Any:
        slots = (scope.instance or {}).get("inputs") or []
        return next((slot.get("link") for slot in slots if isinstance(slot, dict) and slot.get("name") == name), None)

    def _fed_widgets(self, scope: _Scope, index: int) -> list[tuple[dict[str, Any], str]]:
        """The inner ``(node, widget name)`` pairs that the subgraph's input ``index`` feeds."""
        input_id = scope.io_id("inputNode", -10)
        fed = []
        for link in scope.links.values():
            if link.origin_id != input_id or link.origin_slot != index:
                continue
            target = scope.nodes.get(link.target_id) or {}
            for slot in target.get("inputs") or []:
                widget = slot.get("widget") if isinstance(slot, dict) else None
                if slot.get("link") == link.id and isinstance(widget, dict) and widget.get("name"):
                    fed.append((target, str(widget["name"])))
        return fed

    def _promoted_value(self, scope: _Scope, index: int) -> Any:
        """The subgraph node's own value for a widget input, else the first inner widget's value."""
        items = (scope.definition or {}).get("inputs") or []
        widget_inputs = [i for i in range(len(items)) if self._fed_widgets(scope, i)]
        if index not in widget_inputs:
            return MISSING
        values = (scope.instance or {}).get("widgets_values")
        position = widget_inputs.index(index)
        if isinstance(values, list) and position < len(values):
            return values[position]
        node, name = self._fed_widgets(scope, index)[0]
        if not self._is_subgraph(node):
            return self.widget_value(node, name)
        child = self._child(scope, node)
        names = [item.get("name") for item in (child.definition or {}).get("inputs") or []]
        return self._promoted_value(child, names.index(name)) if name in names else MISSING
