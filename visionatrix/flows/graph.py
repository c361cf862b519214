"""ComfyUI API-format graphs (``{node_id: {class_type, inputs, _meta}}``): shape checks and link helpers.

A link is an input value ``[source_node_id, output_index]`` (comfyui_api.md §3.1); anything else is a constant.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from visionatrix.errors import InvalidFlow
from visionatrix.executor.graph import is_link  # the prompt format's one definition of a link

Graph = dict[str, dict[str, Any]]


def looks_like_api_graph(data: Any) -> bool:
    """True for a non-empty mapping whose values are all node dicts carrying ``class_type``."""
    return (
        isinstance(data, dict)
        and bool(data)
        and all(isinstance(node, dict) and "class_type" in node for node in data.values())
    )


def check_api_graph(data: Any, where: str = "graph") -> Graph:
    """Return ``data`` as an API graph or raise :class:`InvalidFlow` naming the first thing that is wrong."""
    if not isinstance(data, dict):
        raise InvalidFlow(f"{where}: expected an object of nodes, got {type(data).__name__}")
    if not data:
        raise InvalidFlow(f"{where}: the graph has no nodes")
    for node_id, node in data.items():
        if not isinstance(node, dict):
            raise InvalidFlow(f"{where}: node {node_id!r} is a {type(node).__name__}, expected an object")
        class_type = node.get("class_type")
        if class_type is None:
            raise InvalidFlow(f"{where}: node {node_id!r} has no class_type")
        if not isinstance(class_type, str) or not class_type:
            raise InvalidFlow(f"{where}: node {node_id!r} has an invalid class_type {class_type!r}")
        inputs = node.get("inputs", {})
        if not isinstance(inputs, dict):
            raise InvalidFlow(f"{where}: node {node_id!r} ({class_type}) has inputs that are not an object")
        meta = node.get("_meta", {})
        if not isinstance(meta, dict):
            raise InvalidFlow(f"{where}: node {node_id!r} ({class_type}) has _meta that is not an object")
        for input_name, value in inputs.items():
            if is_link(value) and value[0] not in data:
                raise InvalidFlow(
                    f"{where}: node {node_id!r} ({class_type}) input {input_name!r} links to missing node {value[0]!r}"
                )
    return data


def title_of(node: dict[str, Any]) -> str:
    """The node's ``_meta.title`` or an empty string."""
    meta = node.get("_meta")
    title = meta.get("title") if isinstance(meta, dict) else None
    return title if isinstance(title, str) else ""


def consumers(graph: Graph, source_id: str) -> Iterator[tuple[str, str, list[Any]]]:
    """Every ``(node_id, input_name, link)`` whose input links to ``source_id``."""
    for node_id, node in graph.items():
        for input_name, value in node.get("inputs", {}).items():
            if is_link(value) and value[0] == source_id:
                yield node_id, input_name, value


def drop_dangling_links(graph: Graph) -> list[tuple[str, str]]:
    """Remove inputs that link to nodes not in ``graph``; return the ``(node_id, input)`` pairs removed."""
    removed: list[tuple[str, str]] = []
    for node_id, node in graph.items():
        inputs = node.get("inputs", {})
        for input_name in [name for name, value in inputs.items() if is_link(value) and value[0] not in graph]:
            del inputs[input_name]
            removed.append((node_id, input_name))
    return removed
