"""Calling one node: list mapping (``INPUT_IS_LIST``/``OUTPUT_IS_LIST``), lazy status, result shapes.

Every value flowing on a link is a list of items (usually one). A node without ``INPUT_IS_LIST`` is called once
per item of its longest input list, shorter lists repeating their last item; with it, once with the whole lists.
Per output slot the calls' results are appended, or concatenated where ``OUTPUT_IS_LIST`` is true.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from visionatrix.errors import VisionatrixError


class Resolved:
    """An output slot's items taken whole from another node's output (a resolved node-expansion link)."""

    def __init__(self, items: list[Any]) -> None:
        self.items = items


class BadNodeResult(VisionatrixError):
    """A node returned something that is not a tuple of its outputs or a ``{"ui", "result"}`` dict."""


def _call_count(inputs: dict[str, list[Any]]) -> int:
    if not inputs:
        return 1
    if any(len(v) == 0 for v in inputs.values()):
        return 0
    return max(len(v) for v in inputs.values())


def mapped_calls(node_class: type, inputs: dict[str, list[Any]], hidden: dict[str, Any],
                 check: Callable[[], None], fn: Callable[..., Any]) -> list[Any]:
    """Call ``fn`` once per mapped set of inputs (or once with whole lists); ``check`` runs before each call."""
    if getattr(node_class, "INPUT_IS_LIST", False):
        check()
        return [fn(**inputs, **hidden)]
    results = []
    for i in range(_call_count(inputs)):
        check()
        kwargs = {name: values[min(i, len(values) - 1)] for name, values in inputs.items()}
        results.append(fn(**kwargs, **hidden))
    return results


def merge_results(node_class: type, results: list[Any]) -> tuple[list[list[Any]], dict[str, Any] | None]:
    """The per-slot output lists and the merged ``ui`` dict of a node's calls."""
    return_types = getattr(node_class, "RETURN_TYPES", ())
    is_list = list(getattr(node_class, "OUTPUT_IS_LIST", [False] * len(return_types)))
    is_list += [False] * (len(return_types) - len(is_list))
    outputs: list[list[Any]] = [[] for _ in return_types]
    ui: dict[str, Any] | None = None
    for result in results:
        values, call_ui = _split(result, len(return_types))
        if call_ui:
            ui = ui or {}
            for key, value in call_ui.items():
                ui.setdefault(key, []).extend(value if isinstance(value, list | tuple) else [value])
        for slot, value in enumerate(values):
            if slot >= len(outputs):
                break
            if isinstance(value, Resolved):
                outputs[slot].extend(value.items)
            elif is_list[slot]:
                outputs[slot].extend(value)
            else:
                outputs[slot].append(value)
    return outputs, ui


def _split(result: Any, count: int) -> tuple[tuple[Any, ...], dict[str, Any] | None]:
    if isinstance(result, dict):
        if result.get("expand") is not None:
            raise BadNodeResult("an 'expand' result reached the merge unexpanded")
        values = result.get("result", ())
        ui = result.get("ui")
        if ui is not None and not isinstance(ui, dict):
            raise BadNodeResult(f"'ui' must be a dict, got {type(ui).__name__}")
    elif result is None and count == 0:
        values, ui = (), None
    else:
        values, ui = result, None
    if not isinstance(values, tuple | list):
        raise BadNodeResult(f"expected a tuple of {count} output(s), got {type(values).__name__}")
    if len(values) < count and not (len(values) == 0 and ui is not None):
        raise BadNodeResult(f"expected {count} output(s), got {len(values)}")
    return tuple(values), ui


def lazy_requests(node_class: type, instance: Any, inputs: dict[str, list[Any]], hidden: dict[str, Any],
                  check: Callable[[], None]) -> set[str]:
    """Names of lazy inputs the node's ``check_lazy_status`` still needs (union over mapped calls)."""
    method = getattr(instance, "check_lazy_status", None)
    if method is None:
        return set()
    needed: set[str] = set()
    for names in mapped_calls(node_class, inputs, hidden, check, method):
        if names:
            needed.update([names] if isinstance(names, str) else names)
    return needed
