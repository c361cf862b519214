"""A safe arithmetic evaluator over Python's ``ast``: numbers, + - * / // % **, unary +/-, parentheses,
the variables a, b, c and a short list of functions. Everything else is refused; nothing reaches ``eval``.

Size guards: the text is capped at :data:`MAX_EXPRESSION_CHARS`, nesting at :data:`MAX_DEPTH`, integers at
:data:`MAX_INT_BITS` bits (checked before a power is computed, so ``9**9**9`` is refused at once), floats
must stay finite, and ``round``'s digits are capped at :data:`MAX_ROUND_DIGITS`.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any

MAX_EXPRESSION_CHARS = 1000
MAX_DEPTH = 64
MAX_INT_BITS = 1024
MAX_ROUND_DIGITS = 64

Number = int | float


class ExpressionError(ValueError):
    """The expression is not an arithmetic expression this evaluator accepts."""


def power(base: Number, exponent: Number) -> Number:
    """``base ** exponent`` refused (:class:`ExpressionError`) when it would be too large or not real."""
    if _integer_power_too_large(base, exponent):
        raise ExpressionError(f"{base} ** {exponent} is too large")
    result = operator.pow(base, exponent)
    if isinstance(result, complex):
        raise ExpressionError(f"{base} ** {exponent} is not a real number")
    return result


def _integer_power_too_large(base: Number, exponent: Number) -> bool:
    """True when ``base ** exponent`` surely has more than MAX_INT_BITS bits (a lower bound, no computing)."""
    if not (isinstance(base, int) and isinstance(exponent, int)) or exponent <= 0 or abs(base) <= 1:
        return False
    return exponent * (abs(base).bit_length() - 1) > MAX_INT_BITS


def round_number(value: Number, ndigits: Number | None = None) -> Number:
    """``round`` with its digits capped at :data:`MAX_ROUND_DIGITS`."""
    if ndigits is None:
        return round(value)
    if not isinstance(ndigits, int) or abs(ndigits) > MAX_ROUND_DIGITS:
        raise ExpressionError(f"round() digits must be an integer within ±{MAX_ROUND_DIGITS}")
    return round(value, ndigits)


def _sqrt(value: Number) -> float:
    if value < 0:
        raise ExpressionError(f"sqrt of a negative number ({value})")
    return math.sqrt(value)


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: power,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Number]] = {ast.USub: operator.neg, ast.UAdd: operator.pos}

# name -> (function, fewest arguments, most arguments or None for any number)
FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int | None]] = {
    "min": (min, 2, None),
    "max": (max, 2, None),
    "abs": (abs, 1, 1),
    "round": (round_number, 1, 2),
    "floor": (math.floor, 1, 1),
    "ceil": (math.ceil, 1, 1),
    "sqrt": (_sqrt, 1, 1),
}
VARIABLES = ("a", "b", "c")


def evaluate(expression: str, variables: Mapping[str, Number]) -> Number:
    """The value of ``expression`` with ``variables`` bound; :class:`ExpressionError` for anything refused."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError(f"not an arithmetic expression ({type(exc).__name__})") from exc
    try:
        return _Evaluator(variables).visit(tree.body, 0)
    except (ZeroDivisionError, OverflowError) as exc:
        raise ExpressionError(f"cannot be computed: {exc}") from exc


class _Evaluator:
    def __init__(self, variables: Mapping[str, Number]) -> None:
        self.variables = variables

    def visit(self, node: ast.expr, depth: int) -> Number:
        if depth > MAX_DEPTH:
            raise ExpressionError(f"nested deeper than {MAX_DEPTH} levels")
        handler = getattr(self, f"visit_{type(node).__name__}", None)
        if handler is None:
            raise ExpressionError(f"{type(node).__name__} is not allowed")
        return _checked(handler(node, depth + 1))

    def visit_Constant(self, node: ast.Constant, depth: int) -> Number:
        if type(node.value) not in (int, float):
            raise ExpressionError(f"only numbers are allowed, not {node.value!r}")
        return node.value

    def visit_Name(self, node: ast.Name, depth: int) -> Number:
        if node.id not in VARIABLES:
            raise ExpressionError(f"unknown name {node.id!r}; the variables are a, b and c")
        if node.id not in self.variables:
            raise ExpressionError(f"uses {node.id!r}, which is not connected")
        return self.variables[node.id]

    def visit_BinOp(self, node: ast.BinOp, depth: int) -> Number:
        apply = _BINARY.get(type(node.op))
        if apply is None:
            raise ExpressionError(f"operator {type(node.op).__name__} is not allowed")
        return apply(self.visit(node.left, depth), self.visit(node.right, depth))

    def visit_UnaryOp(self, node: ast.UnaryOp, depth: int) -> Number:
        apply = _UNARY.get(type(node.op))
        if apply is None:
            raise ExpressionError(f"operator {type(node.op).__name__} is not allowed")
        return apply(self.visit(node.operand, depth))

    def visit_Call(self, node: ast.Call, depth: int) -> Number:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in FUNCTIONS:
            raise ExpressionError(f"only the functions {', '.join(FUNCTIONS)} may be called")
        function, fewest, most = FUNCTIONS[name]
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            raise ExpressionError(f"{name}() takes plain positional arguments only")
        if len(node.args) < fewest or (most is not None and len(node.args) > most):
            raise ExpressionError(f"{name}() got {len(node.args)} arguments")
        args = [self.visit(arg, depth) for arg in node.args]
        return function(*args)


def _checked(value: Any) -> Number:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ExpressionError(f"result {value!r} is not a number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise ExpressionError(f"an intermediate value exceeds {MAX_INT_BITS} bits")
    if isinstance(value, float) and not math.isfinite(value):
        raise ExpressionError("an intermediate value is not finite")
    return value
