"""The ``comfy_execution.graph_utils`` stand-in: :class:`GraphBuilder`, for nodes that expand into a subgraph.
Imports no torch.

While a node runs, the executor sets the default id prefix to ``"<node id>."`` plus a counter
(:func:`prefix_scope`), so the ids of a subgraph built without an explicit prefix are unique and namespaced by
the expanding node.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
from collections.abc import Iterator
from typing import Any

_scope: contextvars.ContextVar[tuple[str, Iterator[int]] | None] = contextvars.ContextVar("vix_graph_prefix",
                                                                                         default=None)
_unscoped = itertools.count()


@contextlib.contextmanager
def prefix_scope(root: str) -> Iterator[None]:
    """Builders made inside get the prefixes ``"<root>.0."``, ``"<root>.1."``, ..."""
    token = _scope.set((root, itertools.count()))
    try:
        yield
    finally:
        _scope.reset(token)


def alloc_prefix() -> str:
    scope = _scope.get()
    if scope is None:
        return f"_{next(_unscoped)}."
    root, counter = scope
    return f"{root}.{next(counter)}."


def is_link(value: Any) -> bool:
    return (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and isinstance(value[1], int) and not isinstance(value[1], bool))


class Node:
    """A node being built: ``out(i)`` is a link to its output ``i``."""

    def __init__(self, node_id: str, class_type: str, inputs: dict[str, Any]) -> None:
        self.id = node_id
        self.class_type = class_type
        self.inputs = dict(inputs)

    def out(self, index: int) -> list[Any]:
        return [self.id, index]

    def set_input(self, key: str, value: Any) -> None:
        if value is None:
            self.inputs.pop(key, None)
        else:
            self.inputs[key] = value

    def get_input(self, key: str) -> Any:
        return self.inputs.get(key)

    def serialize(self) -> dict[str, Any]:
        return {"class_type": self.class_type, "inputs": dict(self.inputs)}


class GraphBuilder:
    """Builds a subgraph in API format; :meth:`finalize` is the ``expand`` value a node returns."""

    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = alloc_prefix() if prefix is None else prefix
        self.nodes: dict[str, Node] = {}
        self._ids = itertools.count(1)

    def node(self, class_type: str, id: str | None = None, **kwargs: Any) -> Node:
        node_id = self.prefix + (str(next(self._ids)) if id is None else str(id))
        if node_id in self.nodes:
            return self.nodes[node_id]
        node = self.nodes[node_id] = Node(node_id, class_type, kwargs)
        return node

    def lookup_node(self, id: str) -> Node | None:
        return self.nodes.get(self.prefix + str(id))

    def remove_node(self, id: str) -> None:
        self.nodes.pop(self.prefix + str(id), None)

    def finalize(self) -> dict[str, Any]:
        return {node_id: node.serialize() for node_id, node in self.nodes.items()}
