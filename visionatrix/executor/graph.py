"""ComfyUI API-format prompts as a graph: nodes, links, ancestors. Imports no torch.

A prompt is ``{node_id: {"class_type": str, "inputs": {name: value}, "_meta": {"title": str}}}``. An input value
is a link iff it is a two-item list whose first item is a string (or int) node id and whose second is an integer
output index; anything else is a constant. Array constants may be wrapped as ``{"__value__": [...]}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from visionatrix.errors import InvalidGraph


def is_link(value: Any) -> bool:
    """True for ``[node_id, output_index]``."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], int | float)
        and not isinstance(value[1], bool)
        and float(value[1]).is_integer()
    )


def unwrap(value: Any) -> Any:
    """Unwrap ``{"__value__": [...]}`` array constants."""
    if isinstance(value, dict) and set(value) == {"__value__"}:
        return value["__value__"]
    return value


@dataclass(frozen=True)
class Link:
    source: str
    slot: int


@dataclass
class Node:
    """One node of a prompt with its links split out of its constants."""

    id: str
    class_type: str
    inputs: dict[str, Any]
    title: str = ""
    links: dict[str, Link] = field(default_factory=dict)

    @property
    def constants(self) -> dict[str, Any]:
        return {k: v for k, v in self.inputs.items() if k not in self.links}


class Graph:
    """A parsed prompt. Node ids are strings; the raw prompt stays available as :attr:`prompt`."""

    def __init__(self, prompt: Mapping[str, Any]) -> None:
        self.prompt: dict[str, Any] = dict(prompt)
        self.nodes: dict[str, Node] = {}
        for node_id, raw in prompt.items():
            self.nodes[str(node_id)] = parse_node(str(node_id), raw)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.nodes

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    def node(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def copy(self) -> Graph:
        """A graph sharing this one's nodes and prompt whose node table can grow (node expansion) on its own."""
        clone = Graph({})
        clone.prompt = self.prompt
        clone.nodes = dict(self.nodes)
        return clone

    def add(self, node: Node) -> None:
        self.nodes[node.id] = node

    def ancestors(self, node_ids: list[str]) -> set[str]:
        """Every node reachable upstream of ``node_ids`` (included), following links to existing nodes."""
        seen: set[str] = set()
        stack = [n for n in node_ids if n in self.nodes]
        while stack:
            node_id = stack.pop()
            if node_id in seen:
                continue
            seen.add(node_id)
            stack.extend(link.source for link in self.nodes[node_id].links.values() if link.source in self.nodes)
        return seen


def parse_node(node_id: str, raw: Any) -> Node:
    if not isinstance(raw, dict):
        raise InvalidGraph(_bad_prompt(f"node {node_id} is not an object"), {})
    class_type = raw.get("class_type")
    if not isinstance(class_type, str) or not class_type:
        raise InvalidGraph(_bad_prompt(f"node {node_id} has no class_type"), {})
    inputs = raw.get("inputs", {})
    if not isinstance(inputs, dict):
        raise InvalidGraph(_bad_prompt(f"node {node_id} ({class_type}): inputs is not an object"), {})
    meta = raw.get("_meta")
    title = meta.get("title", "") if isinstance(meta, dict) else ""
    links = {name: Link(str(v[0]), int(v[1])) for name, v in inputs.items() if is_link(v)}
    return Node(node_id, class_type, dict(inputs), str(title or ""), links)


def _bad_prompt(details: str) -> dict[str, Any]:
    return {"type": "invalid_prompt", "message": "Cannot execute because the prompt is malformed.",
            "details": details, "extra_info": {}}


def parse_prompt(prompt: Any) -> Graph:
    """Parse a prompt given as a dict or JSON text; malformed input raises :class:`InvalidGraph`."""
    if isinstance(prompt, str | bytes):
        try:
            prompt = json.loads(prompt)
        except json.JSONDecodeError as exc:
            raise InvalidGraph(_bad_prompt(f"not valid JSON: {exc}"), {}) from None
        except RecursionError:
            raise InvalidGraph(_bad_prompt("JSON nested too deeply"), {}) from None
    if not isinstance(prompt, dict):
        raise InvalidGraph(_bad_prompt("the prompt must be a JSON object of nodes"), {})
    if not prompt:
        raise InvalidGraph(_bad_prompt("the prompt has no nodes"), {})
    return Graph(prompt)


@dataclass
class Walk:
    """Nodes reachable upstream of some roots, dependencies first, and the cycles met on the way."""

    order: list[str]
    cycles: list[list[str]]


def post_order(graph: Graph, roots: list[str]) -> Walk:
    """Iterative depth-first walk over links (no recursion, so 10,000-node chains are fine)."""
    done: set[str] = set()
    active: set[str] = set()
    order: list[str] = []
    cycles: list[list[str]] = []
    for root in roots:
        if root in done or root not in graph.nodes:
            continue
        path = [root]
        active.add(root)
        iterators = [iter(graph.nodes[root].links.values())]
        while iterators:
            source = next(iterators[-1], None)
            if source is None:
                iterators.pop()
                node_id = path.pop()
                active.discard(node_id)
                done.add(node_id)
                order.append(node_id)
                continue
            upstream = source.source
            if upstream in done or upstream not in graph.nodes:
                continue
            if upstream in active:
                cycles.append([*path[path.index(upstream) :], upstream])
                continue
            path.append(upstream)
            active.add(upstream)
            iterators.append(iter(graph.nodes[upstream].links.values()))
    return Walk(order, cycles)
