"""Node expansion: a node whose call returns ``{"expand": subgraph, "result": outputs}``. Imports no torch.

The subgraph is in API format. Its nodes join the running graph under ids namespaced by the expanding node: an
id that already starts with ``"<node id>."`` (what :class:`~visionatrix.nodes.v3.graph_utils.GraphBuilder`
makes while the node runs) is kept, any other becomes ``"<node id>.<call>.<id>"``. Links between subgraph nodes
follow the renaming; a link to a node outside the subgraph must name a node that has already run. ``result``
lists the expanding node's outputs; each is a constant or a link into the subgraph (or to a node that has run),
and the node's output becomes the linked output once the subgraph has run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from visionatrix.errors import InvalidGraph, VisionatrixError
from visionatrix.executor.calls import Resolved
from visionatrix.executor.graph import Graph, Link, Node, is_link, parse_node, post_order

MAX_DEPTH = 32
"""Expansions nested deeper than this fail (a node expanding into itself forever)."""


class BadExpansion(VisionatrixError):
    """A node's ``expand`` result is not a usable subgraph."""


def is_expansion(result: Any) -> bool:
    return isinstance(result, dict) and result.get("expand") is not None


@dataclass
class Expansion:
    """The subgraphs one node's calls expanded into, and what its outputs resolve to."""

    node_id: str
    calls: list[Any] = field(default_factory=list)
    """Per call: its raw result (not expanded) or ``(result tuple with links renamed, ui)``."""
    nodes: list[Node] = field(default_factory=list)
    output_nodes: list[str] = field(default_factory=list)
    """Subgraph nodes that are output nodes: they run too, like ComfyUI's."""
    display: dict[str, str] = field(default_factory=dict)
    """Subgraph node -> the node it shows as, where its ``override_display_id`` names one (ComfyUI's key; by
    default a subgraph node shows as the expanding node)."""

    def sources(self) -> list[str]:
        """Nodes that must have run before the outputs resolve: linked results and the subgraphs' output nodes."""
        found: list[str] = list(self.output_nodes)
        for call in self.calls:
            if isinstance(call, tuple):
                found.extend(str(v[0]) for v in call[0] if is_link(v))
        return list(dict.fromkeys(found))

    def resolve(self, values: Mapping[str, list[list[Any]]]) -> list[Any]:
        """The calls' results with every link replaced by the linked output's items."""
        results: list[Any] = []
        for call in self.calls:
            if not isinstance(call, tuple):
                results.append(call)
                continue
            outputs, ui = call
            resolved = tuple(Resolved(values[str(v[0])][int(v[1])]) if is_link(v) else v for v in outputs)
            results.append({"result": resolved, "ui": ui})
        return results


def expand(node: Node, results: list[Any], graph: Graph, ready: Callable[[str], bool],
           output_count: Callable[[str], int], known_type: Callable[[str], bool]) -> Expansion:
    """Check and rename the subgraphs of ``node``'s call ``results``; raises :class:`BadExpansion`.
    ``ready(id)``: that node has run; ``output_count(class_type)``: its number of outputs."""
    expansion = Expansion(node.id)
    for call, result in enumerate(results):
        if not is_expansion(result):
            expansion.calls.append(result)
            continue
        subgraph = result["expand"]
        if not isinstance(subgraph, dict) or not subgraph:
            raise BadExpansion("'expand' must be a non-empty object of nodes in API format")
        names = {str(k): _namespaced(node.id, call, str(k)) for k in subgraph}
        nodes = [_renamed(names[str(k)], raw, names) for k, raw in subgraph.items()]
        for k, raw in subgraph.items():
            override = raw.get("override_display_id") if isinstance(raw, dict) else None
            if isinstance(override, str | int) and not isinstance(override, bool):
                expansion.display[names[str(k)]] = str(override)
        for sub in nodes:
            if sub.id in graph or any(n.id == sub.id for n in expansion.nodes):
                raise BadExpansion(f"subgraph node id {sub.id} is already used")
            if not known_type(sub.class_type):
                raise BadExpansion(f"subgraph node {sub.id}: unknown node type {sub.class_type!r}")
            expansion.nodes.append(sub)
        by_id = {n.id: n for n in nodes}
        for sub in nodes:
            for name, link in sub.links.items():
                _check_link(f"subgraph node {sub.id} input {name!r}", link, by_id, ready, output_count)
        outputs = tuple(_rename_link(v, names) for v in _outputs(result))
        for index, value in enumerate(outputs):
            if is_link(value):
                _check_link(f"result {index}", Link(str(value[0]), int(value[1])), by_id, ready, output_count)
        scratch = Graph({})
        scratch.nodes = by_id
        cycles = post_order(scratch, sorted(by_id)).cycles
        if cycles:
            raise BadExpansion(f"the subgraph has a cycle: {' -> '.join(cycles[0])}")
        expansion.calls.append((outputs, result.get("ui")))
    return expansion


def shown_as(node_id: str, display: Mapping[str, str]) -> str:
    """The node ``node_id`` shows as: its display link followed to a node that has none (ComfyUI's
    ``get_display_node_id``); a loop of overrides stops where it would repeat."""
    seen = {node_id}
    while node_id in display and display[node_id] not in seen:
        node_id = display[node_id]
        seen.add(node_id)
    return node_id


def depth(node_id: str, parents: Mapping[str, str]) -> int:
    count = 0
    while node_id in parents:
        node_id = parents[node_id]
        count += 1
    return count


def _namespaced(parent: str, call: int, sub_id: str) -> str:
    return sub_id if sub_id.startswith(f"{parent}.") else f"{parent}.{call}.{sub_id}"


def _rename_link(value: Any, names: Mapping[str, str]) -> Any:
    if is_link(value) and str(value[0]) in names:
        return [names[str(value[0])], int(value[1])]
    return value


def _renamed(node_id: str, raw: Any, names: Mapping[str, str]) -> Node:
    if isinstance(raw, dict) and isinstance(raw.get("inputs"), dict):
        raw = {**raw, "inputs": {k: _rename_link(v, names) for k, v in raw["inputs"].items()}}
    try:
        return parse_node(node_id, raw)
    except InvalidGraph as exc:
        raise BadExpansion(f"subgraph: {exc.error.get('details') or exc}") from None


def _outputs(result: dict[str, Any]) -> tuple[Any, ...]:
    values = result.get("result", ())
    if not isinstance(values, tuple | list):
        raise BadExpansion(f"'result' must be a list of outputs, got {type(values).__name__}")
    return tuple(values)


def _check_link(where: str, link: Link, by_id: Mapping[str, Node], ready: Callable[[str], bool],
                output_count: Callable[[str], int]) -> None:
    source = by_id.get(link.source)
    if source is None:
        if not ready(link.source):
            raise BadExpansion(f"{where} links to node {link.source}, which is not in the subgraph and has not run")
        return
    count = output_count(source.class_type)
    if not 0 <= link.slot < count:
        raise BadExpansion(f"{where} links to output {link.slot} of node {link.source} ({source.class_type}), "
                           f"which has {count} output(s)")
