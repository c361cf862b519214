"""MathExpression: evaluates an arithmetic expression over the inputs a, b and c (see :mod:`.expression`)."""

from __future__ import annotations

from typing import Any

from visionatrix.errors import InvalidInput

from . import expression as expr


class MathExpression:
    DESCRIPTION = (
        "Evaluates an arithmetic expression such as 'a * 2 + b'. Allowed: numbers, + - * / // % **, "
        "parentheses, the inputs a, b, c and the functions min, max, abs, round, floor, ceil, sqrt. "
        "Outputs the result as an INT (truncated toward zero) and as a FLOAT."
    )
    CATEGORY = "utils/math"
    RETURN_TYPES = ("INT", "FLOAT")
    RETURN_NAMES = ("INT", "FLOAT")
    FUNCTION = "run"
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        number = ("INT,FLOAT", {"forceInput": True})
        return {
            "required": {"expression": ("STRING", {"default": "a + b", "multiline": False})},
            "optional": {name: number for name in expr.VARIABLES},
        }

    def run(self, expression: Any, **inputs: Any) -> tuple[int, float]:
        if not isinstance(expression, str):
            raise InvalidInput("expression", f"expected text, got {type(expression).__name__}")
        variables = {name: _number(name, value) for name, value in inputs.items() if value is not None}
        try:
            result = expr.evaluate(expression, variables)
            return int(result), float(result)
        except (expr.ExpressionError, OverflowError) as exc:
            raise InvalidInput("expression", f"{expression!r}: {exc}") from exc


def _number(name: str, value: Any) -> int | float:
    if name not in expr.VARIABLES:
        raise InvalidInput(name, "is not an input of MathExpression")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(name, f"expected a number, got {type(value).__name__}")
    return value
