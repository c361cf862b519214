"""Input parameters of a Visionatrix-annotated API graph (visionatrix.md §4.3).

A node is an input when its class starts with ``VixUi`` (except ``VixUiWorkflowMetadata``) or its title starts
with ``input;``. Its parameter is named ``custom_id`` or ``in_param_{node_id}``, typed and bound by its class,
and parameters are sorted by ``order`` (stable). LoRA loaders chained after a ``VixDynamicLoraDefinition`` give
``loras_in_param_{node_id}`` strength parameters.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from visionatrix.errors import InvalidFlow
from visionatrix.flows import node_specs
from visionatrix.flows.graph import Graph, is_link, title_of
from visionatrix.flows.importers import titles
from visionatrix.flows.importers.messages import validation_message
from visionatrix.flows.manifest import Binding, FlowInput
from visionatrix.flows.node_specs import ObjectInfo

METADATA_CLASS = "VixUiWorkflowMetadata"
DYNAMIC_LORA_CLASS = "VixDynamicLoraDefinition"

# class -> (parameter type, input that receives the value)
PARAM_CLASSES: dict[str, tuple[str, str]] = {
    "VixUiPrompt": ("text", "text"),
    "VixUiRangeInt": ("range", "value"),
    "VixUiRangeFloat": ("range", "value"),
    "VixUiRangeScaleFloat": ("range_scale", "value"),
    "VixUiCheckbox": ("bool", "state"),
    "VixUiCheckboxLogic": ("bool", "state"),
    "VixUiList": ("list", "default_value"),
    "VixUiListLogic": ("list", "default_value"),
    "VixUiAspectRatioSelector": ("list", "aspect_ratio"),
    "SDXLAspectRatioSelector": ("list", "aspect_ratio"),
    "LoadImage": ("image", "image"),
}
RANGE_CLASSES = ("VixUiRangeInt", "VixUiRangeFloat", "VixUiRangeScaleFloat")
LIST_CLASSES = ("VixUiList", "VixUiListLogic")
ASPECT_CLASSES = ("VixUiAspectRatioSelector", "SDXLAspectRatioSelector")


def is_input_node(node: dict[str, Any]) -> bool:
    class_type = node["class_type"]
    if class_type == METADATA_CLASS:
        return False
    return class_type.startswith("VixUi") or title_of(node).startswith("input;")


def derive_inputs(graph: Graph, object_info: ObjectInfo, warnings: list[str]) -> list[FlowInput]:
    """Every parameter the graph declares, sorted by ``order``."""
    params = [
        _node_param(node_id, node, object_info, warnings) for node_id, node in graph.items() if is_input_node(node)
    ]
    params.extend(_dynamic_lora_params(graph))
    names: dict[str, str] = {}
    for param in params:
        node_id = param.bindings[0].node_id
        if param.name in names:
            raise InvalidFlow(f"nodes {names[param.name]} and {node_id} both define the parameter {param.name!r}")
        names[param.name] = node_id
    return sorted(params, key=lambda param: param.order)


def _node_param(node_id: str, node: dict[str, Any], object_info: ObjectInfo, warnings: list[str]) -> FlowInput:
    class_type = node["class_type"]
    inputs = node.get("inputs", {})
    if class_type not in PARAM_CLASSES:
        supported = ", ".join(sorted(PARAM_CLASSES))
        raise InvalidFlow(
            f"node {node_id} ({class_type}) is marked as an input, but only these classes can be: {supported}"
        )
    param_type, value_input = PARAM_CLASSES[class_type]
    if class_type.startswith("VixUi"):
        attrs = titles.from_vix_inputs(node_id, inputs)
    else:
        attrs = titles.from_title(node_id, title_of(node))
    data: dict[str, Any] = {
        "name": attrs.custom_id or f"in_param_{node_id}",
        "display_name": attrs.display_name,
        "type": param_type,
        "optional": attrs.optional,
        "advanced": attrs.advanced,
        "hidden": attrs.hidden,
        "order": attrs.order,
        "translatable": attrs.translatable,
        "bindings": [{"node_id": node_id, "input": value_input}],
    }
    if value_input not in inputs and param_type != "image":
        raise InvalidFlow(f"node {node_id} ({class_type}) has no {value_input!r} input to hold the parameter value")
    value = inputs.get(value_input)
    data["default"] = None if is_link(value) else value
    if param_type == "image":
        data["default"] = None
        if attrs.mask:
            if not attrs.source_input_name:
                raise InvalidFlow(f"node {node_id} ({class_type}): a mask input needs source_input_name=<image param>")
            data["type"] = "image_mask"
            data["source_input_name"] = attrs.source_input_name
    if class_type in RANGE_CLASSES:
        data.update(_range_fields(node_id, class_type, inputs))
        if class_type == "VixUiRangeScaleFloat" and attrs.source_input_name:
            data["source_input_name"] = attrs.source_input_name
    elif class_type in LIST_CLASSES:
        data["options"] = _list_options(node_id, class_type, inputs)
        data["node_maps_choice"] = True
    elif class_type in ASPECT_CLASSES:
        data["options"] = _aspect_options(node_id, class_type, data["default"], object_info, warnings)
    try:
        return FlowInput.model_validate(data)
    except ValidationError as exc:
        raise InvalidFlow(f"node {node_id} ({class_type}): {validation_message(exc)}") from exc


def _range_fields(node_id: str, class_type: str, inputs: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {"integer": class_type == "VixUiRangeInt"}
    for key in ("min", "max", "step"):
        value = inputs.get(key)
        if value is None or is_link(value):
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidFlow(f"node {node_id} ({class_type}): {key} is {value!r}, not a number")
        fields[key] = value
    return fields


def _list_options(node_id: str, class_type: str, inputs: dict[str, Any]) -> dict[str, Any]:
    raw = inputs.get("possible_values")
    where = f"node {node_id} ({class_type}) possible_values"
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidFlow(f"{where}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if isinstance(raw, list) and raw:
        return {str(item): item for item in raw}
    if isinstance(raw, dict) and raw:
        return {str(key): value for key, value in raw.items()}
    raise InvalidFlow(f"{where}: expected a non-empty JSON list or object, got {raw!r}")


def _aspect_options(
    node_id: str, class_type: str, default: Any, object_info: ObjectInfo, warnings: list[str]
) -> dict[str, Any]:
    found = node_specs.input_spec(object_info, class_type, "aspect_ratio")
    choices = node_specs.combo_choices(found[0]) if found else None
    if choices:
        return {str(choice): choice for choice in choices}
    warnings.append(f"node {node_id} ({class_type}): aspect-ratio choices unknown (class not in object_info)")
    return {str(default): default} if default is not None else {"": ""}


def _dynamic_lora_params(graph: Graph) -> list[FlowInput]:
    """Strength parameters of LoRA loaders chained (by both model and clip) after a dynamic-LoRA definition."""
    params: list[FlowInput] = []
    order = 50
    for root_id, root in graph.items():
        if root["class_type"] != DYNAMIC_LORA_CLASS:
            continue
        queue, seen = [root_id], {root_id}
        while queue:
            current = queue.pop(0)
            for child_id, child in graph.items():
                inputs = child.get("inputs", {})
                if child_id in seen or child["class_type"] != "LoraLoader":
                    continue
                model, clip = inputs.get("model"), inputs.get("clip")
                if not (is_link(model) and is_link(clip) and model[0] == current and clip[0] == current):
                    continue
                seen.add(child_id)
                queue.append(child_id)
                params.append(_lora_param(child_id, child, order))
                order += 1
    return params


def _lora_param(node_id: str, node: dict[str, Any], order: int) -> FlowInput:
    title = title_of(node)
    parsed = titles.parse_title(title) if title.startswith("lora-input;") else None
    trigger_words: list[str] = []
    if parsed and "trigger_words" in parsed.raw_values:
        try:
            words = json.loads(parsed.raw_values["trigger_words"])
        except json.JSONDecodeError as exc:
            raise InvalidFlow(f"node {node_id} title {title!r}: trigger_words is not a JSON list") from exc
        trigger_words = [str(word) for word in words] if isinstance(words, list) else [str(words)]
    strength = node.get("inputs", {}).get("strength_model", 1.0)
    return FlowInput(
        name=f"loras_in_param_{node_id}",
        display_name=(parsed.display_name if parsed else "") or str(node["inputs"].get("lora_name", "")),
        type="range",
        default=None if is_link(strength) else strength,
        min=0,
        max=1,
        step=0.01,
        optional=True,
        advanced=True,
        order=order,
        dynamic_lora=True,
        trigger_words=trigger_words,
        bindings=[Binding(node_id=node_id, input="strength_model")],
    )
