"""Reading node descriptions in ComfyUI's ``/object_info`` shape (comfyui_api.md §4).

``object_info`` maps a class name to its description: ``input`` ({required, optional, hidden}: {name: [TYPE,
options]}), ``input_order``, ``output``, ``output_node`` ... An input spec's TYPE is a type string or, for a
legacy combo, the list of choices.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ObjectInfo = Mapping[str, Mapping[str, Any]]

WIDGET_TYPES = frozenset({"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"})
UPLOAD_OPTIONS = ("image_upload", "video_upload", "audio_upload", "animated_image_upload", "mesh_upload")


def spec_type(spec: Any) -> str:
    """``"COMBO"`` for a choice list, else the TYPE string (``"*"`` when the spec is malformed)."""
    if not isinstance(spec, list | tuple) or not spec:
        return "*"
    head = spec[0]
    if isinstance(head, list | tuple):
        return "COMBO"
    return head if isinstance(head, str) else "*"


def spec_options(spec: Any) -> dict[str, Any]:
    """The options dict of an input spec (empty when absent)."""
    if isinstance(spec, list | tuple) and len(spec) > 1 and isinstance(spec[1], dict):
        return spec[1]
    return {}


def combo_choices(spec: Any) -> list[Any] | None:
    """The choices of a combo spec (legacy list or ``["COMBO", {"options": [...]}]``), else None."""
    if not isinstance(spec, list | tuple) or not spec:
        return None
    if isinstance(spec[0], list | tuple):
        return list(spec[0])
    if spec[0] == "COMBO":
        choices = spec_options(spec).get("options")
        return list(choices) if isinstance(choices, list | tuple) else []
    return None


def is_widget(spec: Any) -> bool:
    """True when the input is shown as a widget (and so has a slot in ``widgets_values``)."""
    if spec_options(spec).get("forceInput"):
        return False
    return spec_type(spec) in WIDGET_TYPES


def ordered_inputs(node_info: Mapping[str, Any]) -> list[tuple[str, Any, bool]]:
    """``(name, spec, required)`` for the required then the optional inputs, in ``input_order`` order."""
    sections = node_info.get("input") or {}
    order = node_info.get("input_order") or {}
    result: list[tuple[str, Any, bool]] = []
    for section in ("required", "optional"):
        specs = sections.get(section) or {}
        names = order.get(section) or list(specs)
        result.extend((name, specs[name], section == "required") for name in names if name in specs)
    return result


def input_spec(object_info: ObjectInfo, class_type: str, input_name: str) -> tuple[Any, bool] | None:
    """``(spec, required)`` of one input, or None when the class or the input is unknown."""
    node_info = object_info.get(class_type)
    if node_info is None:
        return None
    sections = node_info.get("input") or {}
    for section in ("required", "optional"):
        specs = sections.get(section) or {}
        if input_name in specs:
            return specs[input_name], section == "required"
    return None


def is_required_input(object_info: ObjectInfo, class_type: str, input_name: str) -> bool:
    """True only when ``object_info`` says the input is required (unknown classes count as not required)."""
    found = input_spec(object_info, class_type, input_name)
    return bool(found and found[1])


def output_types(object_info: ObjectInfo, class_type: str) -> list[str]:
    """The output socket types of a class (empty when unknown); combo outputs read as ``"COMBO"``."""
    node_info = object_info.get(class_type) or {}
    return [t if isinstance(t, str) else "COMBO" for t in node_info.get("output") or []]


def is_output_node(object_info: ObjectInfo, class_type: str) -> bool:
    node_info = object_info.get(class_type)
    return bool(node_info and node_info.get("output_node"))
