"""Tiny string dictionaries: VixDictionaryNew builds one from key/value pairs, VixDictionaryGet looks a key up."""

from __future__ import annotations

from typing import Any

from visionatrix.errors import InvalidInput

DICT_TYPE = "DICT"
CATEGORY_TEXT = "Visionatrix/Text"
PAIR_COUNT = 9


def _pair(index: int) -> dict[str, tuple[str, dict[str, Any]]]:
    text = ("STRING", {"default": "", "multiline": False})
    return {f"key_{index}": text, f"value_{index}": text}


class VixDictionaryNew:
    DESCRIPTION = "Builds a dictionary from up to nine key/value pairs; pairs with an empty key are skipped."
    CATEGORY = CATEGORY_TEXT
    RETURN_TYPES = (DICT_TYPE,)
    RETURN_NAMES = (DICT_TYPE,)
    FUNCTION = "run"
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        optional: dict[str, Any] = {}
        for index in range(2, PAIR_COUNT + 1):
            optional.update(_pair(index))
        return {"required": _pair(1), "optional": optional}

    def run(self, **pairs: Any) -> tuple[dict[str, Any]]:
        built = {}
        for index in range(1, PAIR_COUNT + 1):
            key = pairs.get(f"key_{index}")
            if key:
                built[key] = pairs.get(f"value_{index}", "")
        return (built,)


class VixDictionaryGet:
    DESCRIPTION = "Looks up key in a dictionary; outputs default_value when the key is absent."
    CATEGORY = CATEGORY_TEXT
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("STRING",)
    FUNCTION = "run"
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "dictionary": (DICT_TYPE,),
                "key": ("STRING", {"default": "", "multiline": False}),
            },
            "optional": {"default_value": ("STRING", {"default": "", "multiline": False})},
        }

    def run(self, dictionary: Any, key: Any, default_value: str = "") -> tuple[str]:
        if not isinstance(dictionary, dict):
            raise InvalidInput("dictionary", f"expected a dictionary, got {type(dictionary).__name__}")
        return (str(dictionary.get(key, default_value)),)
