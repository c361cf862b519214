"""Small pure-Python node classes for executor tests; they count their calls so tests can see what ran."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from visionatrix.nodes.context import current
from visionatrix.nodes.registry import NodeRegistry

CALLS: Counter[str] = Counter()


class Number:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT", {"default": 0, "min": -100, "max": 100})}}

    def run(self, value: int) -> tuple[int]:
        CALLS["Number"] += 1
        return (value,)


class Add:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"a": ("INT", {}), "b": ("INT", {"default": 0})}}

    def run(self, a: int, b: int) -> tuple[int]:
        CALLS["Add"] += 1
        return (a + b,)


class Pick:
    """Chooses between two lazy inputs; only the chosen branch may run."""

    RETURN_TYPES = ("*",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"first": ("BOOLEAN", {"default": True})},
                "optional": {"on_true": ("*", {"lazy": True}), "on_false": ("*", {"lazy": True})}}

    def check_lazy_status(self, first: bool, on_true: Any = None, on_false: Any = None) -> list[str]:
        return ["on_true"] if first else ["on_false"]

    def run(self, first: bool, on_true: Any = None, on_false: Any = None) -> tuple[Any]:
        return (on_true if first else on_false,)


class Collect:
    """An output node that records what it received and the hidden inputs."""

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True
    received: list[Any] = []

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("*", {})},
                "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID", "extra_pnginfo": "EXTRA_PNGINFO"}}

    def run(self, value: Any, prompt: Any = None, unique_id: Any = None, extra_pnginfo: Any = None) -> dict:
        CALLS["Collect"] += 1
        Collect.received.append({"value": value, "unique_id": unique_id, "has_prompt": isinstance(prompt, dict),
                                 "extra_pnginfo": extra_pnginfo})
        return {"ui": {"values": [value]}}


class Spread:
    """OUTPUT_IS_LIST: turns a count into a list of numbers."""

    RETURN_TYPES = ("INT",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"count": ("INT", {"default": 3, "min": 0, "max": 10})}}

    def run(self, count: int) -> tuple[list[int]]:
        return (list(range(count)),)


class Sum:
    """INPUT_IS_LIST: receives whole lists."""

    RETURN_TYPES = ("INT",)
    INPUT_IS_LIST = True
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"values": ("INT", {})}}

    def run(self, values: list[int]) -> tuple[int]:
        return (sum(values),)


class Choice:
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"mode": (["fast", "slow"],), "text": ("STRING", {"default": ""}),
                             "ratio": ("FLOAT", {"min": 0.0, "max": 1.0}), "flag": ("BOOLEAN", {})}}

    def run(self, mode: str, text: str, ratio: float, flag: bool) -> tuple[str]:
        return (f"{mode}:{text}:{ratio}:{flag}",)


class Volatile:
    """IS_CHANGED returns NaN: never cached."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT", {})}}

    @classmethod
    def IS_CHANGED(cls, value: int) -> float:
        return math.nan

    def run(self, value: int) -> tuple[int]:
        CALLS["Volatile"] += 1
        return (value,)


class Even:
    """VALIDATE_INPUTS: takes over the checks of ``value``."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT", {"min": 0, "max": 10})}}

    @classmethod
    def VALIDATE_INPUTS(cls, value: int) -> bool | str:
        return True if value is None or value % 2 == 0 else f"value {value} is odd"

    def run(self, value: int) -> tuple[int]:
        return (value,)


class Slow:
    """Reports progress in a loop; an interrupt stops it between steps."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"steps": ("INT", {"default": 5, "min": 1, "max": 100000})}}

    def run(self, steps: int) -> tuple[int]:
        ctx = current()
        for i in range(steps):
            ctx.progress(i + 1, steps)
            if i == 2 and Slow.on_third_step is not None:
                Slow.on_third_step()
        return (steps,)

    on_third_step: Any = None


class Boom:
    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("INT", {})}}

    def run(self, value: int) -> tuple[int]:
        raise ValueError("exploded on purpose")


class Image:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {}}

    def run(self) -> tuple[Any]:
        return ("image",)


MAPPINGS = {c.__name__: c for c in (Number, Add, Pick, Collect, Spread, Sum, Choice, Volatile, Even, Slow, Boom,
                                    Image)}


def make_registry() -> NodeRegistry:
    registry = NodeRegistry()
    registry.register_mappings(MAPPINGS, None, python_module="tests.fake_nodes", pack="fake")
    return registry
