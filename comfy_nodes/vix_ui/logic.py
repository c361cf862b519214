"""Checkbox switches: output the ``input_on_state`` or ``input_off_state`` branch; only that one is evaluated."""

from __future__ import annotations

from typing import Any

from . import fields

BRANCH_ON = "input_on_state"
BRANCH_OFF = "input_off_state"


def chosen_branch(state: Any) -> str:
    return BRANCH_ON if fields.as_bool(state) else BRANCH_OFF


class _CheckboxSwitch:
    RETURN_TYPES = (fields.ANY,)
    RETURN_NAMES = ("output_to",)
    FUNCTION = "run"
    OUTPUT_NODE = False

    def check_lazy_status(self, state: Any, **inputs: Any) -> list[str]:
        wanted = chosen_branch(state)
        return [wanted] if inputs.get(wanted) is None else []

    def run(self, state: Any, **inputs: Any) -> tuple[Any]:
        return (inputs.get(chosen_branch(state)),)


class VixUiCheckboxLogic(_CheckboxSwitch):
    DESCRIPTION = (
        "A checkbox of the flow's form that picks a branch: outputs input_on_state when checked, "
        "input_off_state otherwise; only the chosen branch is evaluated."
    )
    CATEGORY = fields.CATEGORY_UI

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "state": ("BOOLEAN", {"default": False}),
                **fields.labels("Display Name"),
                **fields.placement(),
            },
            "optional": {BRANCH_OFF: fields.lazy_any(), BRANCH_ON: fields.lazy_any(), **fields.hidden_flag()},
        }


class VixCheckboxLogic(_CheckboxSwitch):
    DESCRIPTION = (
        "Picks a branch by a boolean: outputs input_on_state when state is true, input_off_state otherwise; "
        "only the chosen branch is evaluated. Not shown in the flow's form."
    )
    CATEGORY = fields.CATEGORY_LOGIC

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "state": ("BOOLEAN", {"default": False}),
                BRANCH_OFF: fields.lazy_any(),
                BRANCH_ON: fields.lazy_any(),
            },
        }
