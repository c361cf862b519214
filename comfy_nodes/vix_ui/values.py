"""VixUi input nodes that pass one form value through: prompt text, numeric ranges and a checkbox."""

from __future__ import annotations

from typing import Any

from . import fields


class VixUiPrompt:
    DESCRIPTION = "A text input of the flow's form (the prompt); outputs the submitted text."
    CATEGORY = fields.CATEGORY_UI
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("STRING",)
    FUNCTION = "run"
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "text": ("STRING", {"default": "", "multiline": True, "dynamicPrompts": True}),
                **fields.labels("Prompt", optional=False, advanced=False),
                **fields.placement(order=10),
            },
            "optional": {**fields.hidden_flag(), "translatable": ("BOOLEAN", {"default": False})},
        }

    def run(self, text: str, **attributes: Any) -> tuple[str]:
        return (text,)


class VixUiRangeInt:
    DESCRIPTION = "An integer slider of the flow's form (between min and max by step); outputs the value."
    CATEGORY = fields.CATEGORY_UI
    RETURN_TYPES = ("INT",)
    RETURN_NAMES = ("INT",)
    FUNCTION = "run"
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "value": fields.int_input(10),
                **fields.labels("Display Range"),
                "min": fields.int_input(1),
                "max": fields.int_input(20),
                "step": fields.int_input(1),
                **fields.placement(),
            },
            "optional": fields.hidden_flag(),
        }

    def run(self, value: int, **attributes: Any) -> tuple[int]:
        return (int(value),)


class VixUiRangeFloat:
    DESCRIPTION = "A decimal slider of the flow's form; outputs the value unrounded."
    CATEGORY = fields.CATEGORY_UI
    RETURN_TYPES = ("FLOAT",)
    RETURN_NAMES = ("FLOAT",)
    FUNCTION = "run"
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "value": fields.float_input(4.0),
                **fields.labels("Display Range"),
                **_float_limits(),
                **fields.placement(),
            },
            "optional": fields.hidden_flag(),
        }

    def run(self, value: float, **attributes: Any) -> tuple[float]:
        return (float(value),)


class VixUiRangeScaleFloat(VixUiRangeFloat):
    DESCRIPTION = (
        "A scale factor of the flow's form, shown relative to the size of the image input named by "
        "source_input_name; outputs the factor unrounded."
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "value": fields.float_input(4.0),
                **fields.labels("Image Size Factor"),
                "source_input_name": ("STRING", {"default": ""}),
                **_float_limits(),
                **fields.placement(),
            },
            "optional": fields.hidden_flag(),
        }


def _float_limits() -> fields.Spec:
    return {
        "min": fields.float_input(1.0),
        "max": fields.float_input(9.0),
        "step": fields.float_input(0.1),
    }


class VixUiCheckbox:
    DESCRIPTION = "A checkbox of the flow's form; outputs the state as a bool and as 0/1."
    CATEGORY = fields.CATEGORY_UI
    RETURN_TYPES = ("BOOLEAN", "INT")
    RETURN_NAMES = ("bool", "int")
    FUNCTION = "run"
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "state": ("BOOLEAN", {"default": False}),
                **fields.labels("Display Name"),
                **fields.placement(),
            },
            "optional": fields.hidden_flag(),
        }

    def run(self, state: Any, **attributes: Any) -> tuple[bool, int]:
        checked = fields.as_bool(state)
        return checked, int(checked)
