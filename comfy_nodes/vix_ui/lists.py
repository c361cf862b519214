"""VixUi dropdowns: VixUiList outputs the chosen value; VixUiListLogic routes the input at the chosen position."""

from __future__ import annotations

from typing import Any

from visionatrix.errors import InvalidInput

from . import choices, fields

ROUTED_INPUTS = ("input_first", "input_second", "input_third", "input_fourth", "input_fifth", "input_sixth")


def _list_inputs(display_name: str) -> fields.Spec:
    return {
        "default_value": ("STRING", {}),
        "possible_values": ("STRING", {"default": "[]", "multiline": True}),
        **fields.labels(display_name),
        **fields.placement(),
    }


class VixUiList:
    DESCRIPTION = (
        "A dropdown of the flow's form. possible_values is a JSON list, or a JSON object mapping each shown "
        "label to the value to output; outputs the chosen value (mapped when the object has it as a key)."
    )
    CATEGORY = fields.CATEGORY_UI
    RETURN_TYPES = (fields.ANY,)
    RETURN_NAMES = ("*",)
    FUNCTION = "run"
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": _list_inputs("Dropdown list"), "optional": fields.hidden_flag()}

    def run(self, default_value: str, possible_values: str, **attributes: Any) -> tuple[Any]:
        return (choices.map_choice(default_value, choices.parse_possible_values(possible_values)),)


class VixUiListLogic:
    DESCRIPTION = (
        "A dropdown of the flow's form that picks a branch: outputs input_first when the first possible value "
        "is chosen, input_second for the second, and so on (up to six); only the chosen branch is evaluated."
    )
    CATEGORY = fields.CATEGORY_UI
    RETURN_TYPES = (fields.ANY,)
    RETURN_NAMES = ("output_to",)
    FUNCTION = "run"
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        routed = {name: fields.lazy_any() for name in ROUTED_INPUTS}
        return {"required": _list_inputs("Display Name"), "optional": {**routed, **fields.hidden_flag()}}

    def check_lazy_status(self, default_value: str, possible_values: str, **inputs: Any) -> list[str]:
        wanted = _chosen_input(default_value, possible_values)
        return [wanted] if inputs.get(wanted) is None else []

    def run(self, default_value: str, possible_values: str, **inputs: Any) -> tuple[Any]:
        wanted = _chosen_input(default_value, possible_values)
        if wanted not in inputs:
            raise InvalidInput(wanted, f"the branch for {default_value!r} is not connected")
        return (inputs[wanted],)


def _chosen_input(default_value: str, possible_values: str) -> str:
    position = choices.position_of(default_value, choices.parse_possible_values(possible_values))
    if position >= len(ROUTED_INPUTS):
        raise InvalidInput("default_value", f"{default_value!r} is choice {position + 1}; at most 6 are routable")
    return ROUTED_INPUTS[position]
