"""Constant nodes (ComfyUI's ``Primitive*``): each outputs its ``value`` widget unchanged."""

from __future__ import annotations

import sys
from typing import Any

CATEGORY = "utils/primitive"


class _Primitive:
    CATEGORY = CATEGORY
    FUNCTION = "run"
    OUTPUT_NODE = False
    VALUE_SPEC: tuple[str, dict[str, Any]] = ("STRING", {})

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": cls.VALUE_SPEC}}

    def run(self, value: Any) -> tuple[Any]:
        return (value,)


class PrimitiveInt(_Primitive):
    DESCRIPTION = "An integer constant."
    RETURN_TYPES = ("INT",)
    RETURN_NAMES = ("INT",)
    VALUE_SPEC = ("INT", {"default": 0, "min": -sys.maxsize, "max": sys.maxsize, "control_after_generate": True})

    def run(self, value: Any) -> tuple[int]:
        return (int(value),)


class PrimitiveFloat(_Primitive):
    DESCRIPTION = "A decimal constant."
    RETURN_TYPES = ("FLOAT",)
    RETURN_NAMES = ("FLOAT",)
    VALUE_SPEC = ("FLOAT", {"default": 0.0, "min": -sys.maxsize, "max": sys.maxsize, "step": 0.1, "round": False})

    def run(self, value: Any) -> tuple[float]:
        return (float(value),)


class PrimitiveString(_Primitive):
    DESCRIPTION = "A one-line text constant."
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("STRING",)
    VALUE_SPEC = ("STRING", {"default": ""})


class PrimitiveStringMultiline(_Primitive):
    DESCRIPTION = "A multi-line text constant."
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("STRING",)
    VALUE_SPEC = ("STRING", {"default": "", "multiline": True})


class PrimitiveBoolean(_Primitive):
    DESCRIPTION = "A true/false constant."
    RETURN_TYPES = ("BOOLEAN",)
    RETURN_NAMES = ("BOOLEAN",)
    VALUE_SPEC = ("BOOLEAN", {"default": False})

    def run(self, value: Any) -> tuple[bool]:
        return (bool(value),)
