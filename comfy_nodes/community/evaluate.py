"""``Evaluate Integers`` (Efficiency Nodes' simple-eval node): an arithmetic expression over the integers a, b, c.

Same node name, inputs, defaults, ranges and outputs (INT, FLOAT, STRING) as the original; the expression goes
through our safe arithmetic evaluator (``comfy_nodes/primitives/expression.py``: numbers, + - * / // % **,
parentheses, a, b, c, min, max, abs, round, floor, ceil, sqrt), never through ``eval``. The original's
``simpleeval`` also accepts comparisons, conditionals and strings; those are refused here with a clear error.
"""

from __future__ import annotations

import logging
from typing import Any

from comfy_nodes.primitives import expression as expr
from visionatrix.errors import InvalidInput

log = logging.getLogger(__name__)

INT_LIMIT = 48000
"""The original's range for a, b and c."""


class EvaluateIntegers:
    DESCRIPTION = (
        "Evaluates an arithmetic expression over the integers a, b and c, such as 'a // 3' or '((a + b) - c) / 2'. "
        "Allowed: numbers, + - * / // % **, parentheses and the functions min, max, abs, round, floor, ceil, sqrt. "
        "Outputs the result as an INT (truncated toward zero), a FLOAT and a STRING."
    )
    CATEGORY = "Efficiency Nodes/Simple Eval"
    RETURN_TYPES = ("INT", "FLOAT", "STRING")
    FUNCTION = "evaluate"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        number = ("INT", {"default": 0, "min": -INT_LIMIT, "max": INT_LIMIT, "step": 1})
        return {
            "required": {
                "python_expression": ("STRING", {"default": "((a + b) - c) / 2", "multiline": False}),
                "print_to_console": (["False", "True"],),
            },
            "optional": {"a": number, "b": number, "c": number},
        }

    def evaluate(self, python_expression: Any, print_to_console: Any, a: Any = 0, b: Any = 0,
                 c: Any = 0) -> tuple[int, float, str]:
        if not isinstance(python_expression, str):
            raise InvalidInput("python_expression", f"expected text, got {type(python_expression).__name__}")
        variables = {"a": _integer("a", a), "b": _integer("b", b), "c": _integer("c", c)}
        try:
            result = expr.evaluate(python_expression, variables)
            int_result, float_result = int(result), float(result)
        except (expr.ExpressionError, OverflowError, ValueError) as exc:
            raise InvalidInput("python_expression", f"{python_expression!r}: {exc}") from exc
        if print_to_console == "True":
            log.info("Evaluate Integers: a=%s b=%s c=%s: %s = INT %s, FLOAT %s", a, b, c, python_expression,
                     int_result, float_result)
        return int_result, float_result, str(result)


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise InvalidInput(name, f"expected an integer, got {value!r}")
    return int(value)
