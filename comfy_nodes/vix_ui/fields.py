"""Input specs shared by the VixUi nodes: the attributes Visionatrix reads to build a flow's input form.

The order of keys matters: the ComfyUI frontend maps ``widgets_values`` to inputs in declaration order, so each
node composes these pieces in the same order as the published ComfyUI-Visionatrix pack.
"""

from __future__ import annotations

from typing import Any

ANY = "*"
CATEGORY_UI = "Visionatrix/UI"
CATEGORY_LOGIC = "Visionatrix/Logic"

INT_BOUNDS = {"min": -(2**53 - 1), "max": 2**53 - 1}
FLOAT_BOUNDS = {"min": -1e15, "max": 1e15}

Spec = dict[str, tuple[Any, ...]]


def int_input(default: int) -> tuple[str, dict[str, Any]]:
    return ("INT", {"default": default, **INT_BOUNDS})


def float_input(default: float, step: float = 0.01) -> tuple[str, dict[str, Any]]:
    return ("FLOAT", {"default": default, "step": step, "round": False, **FLOAT_BOUNDS})


def labels(display_name: str, *, optional: bool = True, advanced: bool = True) -> Spec:
    """``display_name``, ``optional``, ``advanced``: how the input is shown in the Visionatrix form."""
    return {
        "display_name": ("STRING", {"default": display_name}),
        "optional": ("BOOLEAN", {"default": optional}),
        "advanced": ("BOOLEAN", {"default": advanced}),
    }


def placement(*, order: int = 99, custom_id: str = "") -> Spec:
    """``order`` (position in the form) and ``custom_id`` (the parameter name; empty = ``in_param_<node>``)."""
    return {
        "order": ("INT", {"default": order}),
        "custom_id": ("STRING", {"default": custom_id}),
    }


def hidden_flag() -> Spec:
    """The optional ``hidden`` switch: the input exists but is not shown in the form."""
    return {"hidden": ("BOOLEAN", {"default": False})}


def lazy_any() -> tuple[str, dict[str, bool]]:
    return (ANY, {"lazy": True})


_TRUE_WORDS = frozenset({"true", "1", "yes", "y", "on"})


def as_bool(value: Any) -> bool:
    """A checkbox state as a bool; strings are read the way Visionatrix reads submitted flags."""
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_WORDS
    return bool(value)
