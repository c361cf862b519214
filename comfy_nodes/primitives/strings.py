"""Text nodes (ComfyUI's ``utils/string``): join two strings, replace every occurrence of a substring."""

from __future__ import annotations

from typing import Any

from visionatrix.errors import InvalidInput

CATEGORY = "utils/string"


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidInput(name, f"expected text, got {type(value).__name__}")
    return value


class StringConcatenate:
    DESCRIPTION = "Joins string_a and string_b with delimiter between them."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("STRING",)
    FUNCTION = "run"
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "string_a": ("STRING", {"multiline": True}),
                "string_b": ("STRING", {"multiline": True}),
                "delimiter": ("STRING", {"multiline": False, "default": ""}),
            }
        }

    def run(self, string_a: Any, string_b: Any, delimiter: Any = "") -> tuple[str]:
        parts = (_text("string_a", string_a), _text("string_b", string_b))
        return (_text("delimiter", delimiter).join(parts),)


class StringReplace:
    DESCRIPTION = "Replaces every occurrence of find in string with replace (plain text, not a pattern)."
    CATEGORY = CATEGORY
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("STRING",)
    FUNCTION = "run"
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "string": ("STRING", {"multiline": True}),
                "find": ("STRING", {"multiline": True}),
                "replace": ("STRING", {"multiline": True}),
            }
        }

    def run(self, string: Any, find: Any, replace: Any) -> tuple[str]:
        text, old, new = _text("string", string), _text("find", find), _text("replace", replace)
        return (text.replace(old, new) if old else text,)
