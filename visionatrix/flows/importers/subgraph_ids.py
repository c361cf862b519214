"""The ids the official editor gives the inner nodes of a UI workflow's subgraph definitions when it loads one.

Node ids are unique across a whole workflow in the editor: on load, an inner node whose id is already taken (by a
top-level node, or by a node of a definition read before) gets a fresh id, and the links of its definition follow.
Definitions are read in the order of ``definitions.subgraphs``, each followed by the definitions nested in it; the
first definition of an id wins. A fresh id is the one after the highest id seen so far (the workflow's
``last_node_id``, else ``state.lastNodeId``, raised by every numeric id read), skipping taken ones. The execution
ids the editor queues (``"<outer>:<inner>"``) are made of these ids, so the importer uses them too.
"""

from __future__ import annotations

import copy
from typing import Any


def ordered_definitions(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every subgraph definition by id, in the editor's reading order (nested ones after their holder)."""
    found: dict[str, dict[str, Any]] = {}

    def visit(holder: Any) -> None:
        items = ((holder.get("definitions") or {}).get("subgraphs") or []) if isinstance(holder, dict) else []
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict) or item.get("id") is None:
                continue
            found.setdefault(str(item["id"]), item)
            visit(item)

    visit(data)
    return found


def editor_definitions(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``ordered_definitions`` with inner node ids renumbered where the editor renumbers them (copies; ``data`` is
    left alone)."""
    definitions = ordered_definitions(data)
    taken = {str(node["id"]) for node in _nodes(data)}
    numbers = {number for number in map(_number, taken) if number is not None}
    last = _last_node_id(data)
    renumbered: dict[str, dict[str, Any]] = {}
    for definition_id, definition in definitions.items():
        keys = [str(node["id"]) for node in _nodes(definition)]
        if len(set(keys)) < len(keys):  # left as it is: the importer reports the duplicate id
            renumbered[definition_id] = definition
            taken.update(keys)
            continue
        remap: dict[str, int] = {}
        for key in keys:
            if key in taken:
                last = _next_free(last, numbers)
                remap[key] = last
                numbers.add(last)
                taken.add(str(last))
                continue
            taken.add(key)
            number = _number(key)
            if number is not None:
                numbers.add(number)
                last = max(last, number) if last is not None else number
        renumbered[definition_id] = _renumber(definition, remap) if remap else definition
    return renumbered


def _nodes(holder: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = holder.get("nodes")
    return [node for node in nodes if isinstance(node, dict) and "id" in node] if isinstance(nodes, list) else []


def _number(key: str) -> int | None:
    """A node id's number when the id is a plain non-negative integer (``"7"``, not ``"07"`` or ``"a"``)."""
    return int(key) if key.isascii() and key.isdigit() and str(int(key)) == key else None


def _last_node_id(data: dict[str, Any]) -> int | None:
    value = data.get("last_node_id")
    if "last_node_id" not in data:
        state = data.get("state")
        value = state.get("lastNodeId", 0) if isinstance(state, dict) and data.get("version") != 0.4 else 0
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _next_free(last: int | None, numbers: set[int]) -> int:
    candidate = last + 1 if last is not None else 1
    while candidate in numbers:
        candidate += 1
    return candidate


def _renumber(definition: dict[str, Any], remap: dict[str, int]) -> dict[str, Any]:
    """A copy of ``definition`` with its nodes and link ends renamed by ``remap``."""
    copied = copy.deepcopy(definition)
    for node in _nodes(copied):
        node["id"] = remap.get(str(node["id"]), node["id"])
    links = copied.get("links")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, list) and len(link) >= 5:
            link[1] = remap.get(str(link[1]), link[1])
            link[3] = remap.get(str(link[3]), link[3])
        elif isinstance(link, dict):
            for end in ("origin_id", "target_id"):
                if end in link:
                    link[end] = remap.get(str(link[end]), link[end])
    return copied
