"""Removing nodes from an API graph without leaving broken required inputs (visionatrix.md §4.3).

Used when an optional file parameter is not given: its ``LoadImage`` node goes. Each consumer loses the inputs
that linked to the removed node. A consumer that lost a *required* input is removed in turn, unless exactly one
of its remaining linked inputs has the type of an output it must give: then that output is passed through, i.e.
its consumers are rewired to that input's source (``ImageBatch`` of two images, one missing, becomes the other
image). Inputs of classes that ``node_info`` does not describe count as optional (the node is kept).
"""

from __future__ import annotations

from typing import Any

from visionatrix.executor.types import types_compatible
from visionatrix.flows import node_specs
from visionatrix.flows.graph import Graph, consumers, is_link
from visionatrix.flows.node_specs import ObjectInfo


def remove_node(graph: Graph, node_id: str, node_info: ObjectInfo) -> list[str]:
    """Remove ``node_id`` and, recursively, the consumers it breaks; return every removed node id."""
    removed: list[str] = []
    _remove(graph, node_id, {}, node_info, removed)
    return removed


def _remove(
    graph: Graph, node_id: str, passthrough: dict[int, list[Any]], node_info: ObjectInfo, removed: list[str]
) -> None:
    if node_id not in graph:
        return
    del graph[node_id]
    removed.append(node_id)
    broken: list[str] = []
    for consumer_id, input_name, link in list(consumers(graph, node_id)):
        consumer = graph[consumer_id]
        replacement = passthrough.get(int(link[1]))
        if replacement is not None:
            consumer["inputs"][input_name] = list(replacement)
            continue
        del consumer["inputs"][input_name]
        if node_specs.is_required_input(node_info, consumer["class_type"], input_name) and consumer_id not in broken:
            broken.append(consumer_id)
    for consumer_id in broken:
        if consumer_id in graph:
            _remove(graph, consumer_id, _passthrough(graph[consumer_id], node_info), node_info, removed)


def _passthrough(node: dict[str, Any], node_info: ObjectInfo) -> dict[int, list[Any]]:
    """For each output index: the single remaining linked input of the same type, when there is exactly one."""
    result: dict[int, list[Any]] = {}
    for index, out_type in enumerate(node_specs.output_types(node_info, node["class_type"])):
        if out_type in ("*", "COMBO"):
            continue
        candidates = []
        for input_name, value in node.get("inputs", {}).items():
            found = node_specs.input_spec(node_info, node["class_type"], input_name)
            in_type = node_specs.spec_type(found[0]) if found else "*"
            if is_link(value) and in_type != "*" and types_compatible(in_type, out_type):
                candidates.append(value)
        if len(candidates) == 1:
            result[index] = candidates[0]
    return result
