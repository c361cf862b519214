"""``MathExpression|pysssss`` (pythongosssss' ComfyUI-Custom-Scripts "Math Expression 🐍").

Same node name, inputs (``expression``; optional ``a``, ``b``, ``c`` of type INT, FLOAT, IMAGE or LATENT; the
hidden prompt and workflow), outputs (INT, FLOAT; the value also goes to the node's UI) and language as the
original, evaluated by walking Python's ``ast`` here, never by ``eval``:

- numbers (``True``/``False`` count as 1/0), ``a``, ``b``, ``c`` (numbers); ``a.width``/``a.height`` of an IMAGE,
  or of a LATENT (its size times 8); ``Node name.widget`` reads a number input of another node of the graph, found
  by its "Node name for S&R" property, type or title, as the original;
- ``+ - * / // % **``, ``^`` (xor), ``& | << >> ~`` on integers, unary ``-`` (and ``+``), ``not``, ``and``/``or``
  and comparisons giving 1 or 0;
- the functions ``round(x[, digits]) ceil floor min max sqrt int iif(cond, then, else) randomint(lo, hi)
  randomchoice(...)``; an expression that mentions "random" is re-run every time.

Where the original is loose, this one is stricter or plain: chained comparisons (``a < b < c``) and ``and``/``or``
over more than two values are evaluated whole (the original looks at the first two), and anything else (names,
subscripts, strings, keyword arguments, lambdas...) is refused with :class:`InvalidInput`. Guards: the text is
at most :data:`MAX_EXPRESSION_CHARS` characters and :data:`MAX_DEPTH` levels deep, integers stay within
:data:`MAX_INT_BITS` bits (checked before a power or shift is computed), floats must stay finite.
"""

from __future__ import annotations

import ast
import math
import operator
import random
from collections.abc import Callable, Mapping
from typing import Any

from comfy_nodes.primitives.expression import (
    MAX_DEPTH,
    MAX_EXPRESSION_CHARS,
    MAX_INT_BITS,
    ExpressionError,
    power,
    round_number,
)
from visionatrix.errors import InvalidInput

VARIABLES = ("a", "b", "c")
LATENT_SCALE = 8

Number = int | float


RefusedExpression = ExpressionError
"""The expression uses something this evaluator does not accept (the arithmetic evaluator's error)."""


def _integers_only(name: str, apply: Callable[[int, int], int]) -> Callable[[Number, Number], int]:
    def checked(left: Number, right: Number) -> int:
        if not (isinstance(left, int) and isinstance(right, int)):
            raise RefusedExpression(f"{name} needs integers, got {left!r} and {right!r}")
        return apply(left, right)

    return checked


def _shift_left(value: int, count: int) -> int:
    if count > 0 and value and value.bit_length() + count > MAX_INT_BITS:
        raise RefusedExpression(f"{value} << {count} is too large")
    return value << count


_BINARY: dict[type[ast.operator], Callable[[Number, Number], Number]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: power,
    ast.BitXor: _integers_only("^", operator.xor),
    ast.BitAnd: _integers_only("&", operator.and_),
    ast.BitOr: _integers_only("|", operator.or_),
    ast.LShift: _integers_only("<<", _shift_left),
    ast.RShift: _integers_only(">>", operator.rshift),
}
_COMPARE: dict[type[ast.cmpop], Callable[[Number, Number], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def _invert(value: Number) -> int:
    if not isinstance(value, int):
        raise RefusedExpression(f"~ needs an integer, got {value!r}")
    return ~value


_UNARY: dict[type[ast.unaryop], Callable[[Number], Number]] = {
    ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: lambda value: 0 if value else 1, ast.Invert: _invert,
}


def _sqrt(value: Number) -> float:
    if value < 0:
        raise RefusedExpression(f"sqrt of a negative number ({value})")
    return math.sqrt(value)


def _random_int(low: Number, high: Number) -> int:
    if not (isinstance(low, int) and isinstance(high, int)) or low > high:
        raise RefusedExpression(f"randomint needs integers low <= high, got {low!r}, {high!r}")
    return random.randint(low, high)


# name -> (function, fewest arguments, most arguments or None for any number)
FUNCTIONS: dict[str, tuple[Callable[..., Number], int, int | None]] = {
    "round": (round_number, 1, 2),
    "ceil": (math.ceil, 1, 1),
    "floor": (math.floor, 1, 1),
    "min": (min, 2, None),
    "max": (max, 2, None),
    "randomint": (_random_int, 2, 2),
    "randomchoice": (lambda *values: random.choice(values), 2, None),
    "sqrt": (_sqrt, 1, 1),
    "int": (int, 1, 1),
    "iif": (lambda condition, then, otherwise: then if condition else otherwise, 3, 3),
}


def _checked(value: Any) -> Number:
    if isinstance(value, bool):
        return int(value)
    if not isinstance(value, int | float):
        raise RefusedExpression(f"{value!r} is not a number")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        raise RefusedExpression(f"a value exceeds {MAX_INT_BITS} bits")
    if isinstance(value, float) and not math.isfinite(value):
        raise RefusedExpression("a value is not finite")
    return value


class Evaluator:
    """Evaluates one parsed expression against the node's inputs and, for ``Node.widget``, the graph."""

    def __init__(self, variables: Mapping[str, Any], widget: Callable[[str, str], Any]) -> None:
        self.variables = variables
        self.widget = widget

    def visit(self, node: ast.expr, depth: int = 0) -> Number:
        if depth > MAX_DEPTH:
            raise RefusedExpression(f"nested deeper than {MAX_DEPTH} levels")
        handler = getattr(self, f"visit_{type(node).__name__}", None)
        if handler is None:
            raise RefusedExpression(f"{type(node).__name__} is not allowed")
        return _checked(handler(node, depth + 1))

    def visit_Constant(self, node: ast.Constant, depth: int) -> Number:
        if not isinstance(node.value, int | float):
            raise RefusedExpression(f"only numbers are allowed, not {node.value!r}")
        return node.value

    def visit_Name(self, node: ast.Name, depth: int) -> Number:
        if node.id not in VARIABLES:
            raise RefusedExpression(f"unknown name {node.id!r}; the inputs are a, b and c")
        value = self.variables.get(node.id)
        if value is None:
            raise RefusedExpression(f"uses {node.id!r}, which is not connected")
        if not isinstance(value, int | float):
            raise RefusedExpression(f"{node.id} is an IMAGE or LATENT: use {node.id}.width or {node.id}.height")
        return value

    def visit_Attribute(self, node: ast.Attribute, depth: int) -> Number:
        if not isinstance(node.value, ast.Name):
            raise RefusedExpression("only a.width, a.height or Node.widget may be read")
        owner = node.value.id
        if owner in VARIABLES and node.attr in ("width", "height"):
            return size_of(owner, self.variables.get(owner), node.attr)
        return self.widget(owner, node.attr)

    def visit_BinOp(self, node: ast.BinOp, depth: int) -> Number:
        apply = _BINARY.get(type(node.op))
        if apply is None:
            raise RefusedExpression(f"operator {type(node.op).__name__} is not allowed")
        return apply(self.visit(node.left, depth), self.visit(node.right, depth))

    def visit_UnaryOp(self, node: ast.UnaryOp, depth: int) -> Number:
        return _UNARY[type(node.op)](self.visit(node.operand, depth))

    def visit_BoolOp(self, node: ast.BoolOp, depth: int) -> Number:
        values = [self.visit(value, depth) for value in node.values]
        return int(all(values)) if isinstance(node.op, ast.And) else int(any(values))

    def visit_Compare(self, node: ast.Compare, depth: int) -> Number:
        left = self.visit(node.left, depth)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            compare = _COMPARE.get(type(op))
            if compare is None:
                raise RefusedExpression(f"comparison {type(op).__name__} is not allowed")
            right = self.visit(comparator, depth)
            if not compare(left, right):
                return 0
            left = right
        return 1

    def visit_Call(self, node: ast.Call, depth: int) -> Number:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in FUNCTIONS:
            raise RefusedExpression(f"only the functions {', '.join(FUNCTIONS)} may be called")
        function, fewest, most = FUNCTIONS[name]
        if node.keywords or any(isinstance(arg, ast.Starred) for arg in node.args):
            raise RefusedExpression(f"{name}() takes plain positional arguments only")
        if len(node.args) < fewest or (most is not None and len(node.args) > most):
            wanted = f"{fewest} or more" if most is None else f"{fewest} to {most}"
            raise RefusedExpression(f"{name}() takes {wanted} arguments, got {len(node.args)}")
        return function(*[self.visit(arg, depth) for arg in node.args])


def size_of(name: str, value: Any, side: str) -> int:
    """``width``/``height`` of an IMAGE ``[B, H, W, C]`` or of a LATENT (its samples' size times 8)."""
    if isinstance(value, dict) and "samples" in value:
        samples = value["samples"]
        return int(samples.shape[-1 if side == "width" else -2]) * LATENT_SCALE
    shape = getattr(value, "shape", None)
    if shape is None or len(shape) != 4:
        raise RefusedExpression(f"{name}.{side} needs an IMAGE or LATENT on {name}")
    return int(shape[2 if side == "width" else 1])


def widget_value(prompt: Any, extra_pnginfo: Any, node_name: str, widget: str) -> Number:
    """The number input ``widget`` of the node named ``node_name`` in the workflow (as the original finds it)."""
    workflow = extra_pnginfo.get("workflow") if isinstance(extra_pnginfo, dict) else None
    nodes = workflow.get("nodes", []) if isinstance(workflow, dict) else []
    for node in nodes:
        if not isinstance(node, dict):
            continue
        names = [(node.get("properties") or {}).get("Node name for S&R", node.get("type")), node.get("title")]
        if node_name in names:
            inputs = (prompt or {}).get(str(node.get("id")), {}).get("inputs", {})
            if widget not in inputs:
                raise RefusedExpression(f"widget not found: {node_name}.{widget}")
            value = inputs[widget]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RefusedExpression(f"{node_name}.{widget} is not a number ({value!r})")
            return value
    raise RefusedExpression(f"node not found: {node_name}.{widget}")


def evaluate(expression: str, variables: Mapping[str, Any], widget: Callable[[str, str], Any]) -> Number:
    """The value of ``expression``; :class:`RefusedExpression` for anything refused or not computable."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise RefusedExpression(f"longer than {MAX_EXPRESSION_CHARS} characters")
    text = expression.replace("\n", " ").replace("\r", "").strip()
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise RefusedExpression(f"not an expression ({type(exc).__name__})") from exc
    try:
        return Evaluator(variables, widget).visit(tree.body)
    except (ZeroDivisionError, OverflowError, ValueError, TypeError) as exc:
        if isinstance(exc, RefusedExpression):
            raise
        raise RefusedExpression(f"cannot be computed: {exc}") from exc


class MathExpressionPysssss:
    DESCRIPTION = (
        "Evaluates a math expression over a, b and c (numbers, or a.width / a.height of an IMAGE or LATENT), "
        "e.g. '1024 - a' or 'min(a, 8) * 25'. Allowed: + - * / // % ** ^ & | << >> ~, comparisons, and/or/not, "
        "round, ceil, floor, min, max, sqrt, int, iif, randomint, randomchoice. Outputs an INT and a FLOAT."
    )
    CATEGORY = "utils"
    RETURN_TYPES = ("INT", "FLOAT")
    RETURN_NAMES = ("INT", "FLOAT")
    FUNCTION = "evaluate"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        any_value = ("INT,FLOAT,IMAGE,LATENT",)
        return {
            "required": {"expression": ("STRING", {"multiline": True, "dynamicPrompts": False})},
            "optional": {"a": any_value, "b": any_value, "c": any_value},
            "hidden": {"extra_pnginfo": "EXTRA_PNGINFO", "prompt": "PROMPT"},
        }

    @classmethod
    def IS_CHANGED(cls, expression: Any = "", **inputs: Any) -> Any:
        return math.nan if isinstance(expression, str) and "random" in expression else expression

    def evaluate(self, expression: Any, prompt: Any = None, extra_pnginfo: Any = None, a: Any = None,
                 b: Any = None, c: Any = None) -> dict[str, Any]:
        if not isinstance(expression, str):
            raise InvalidInput("expression", f"expected text, got {type(expression).__name__}")

        def widget(node_name: str, name: str) -> Number:
            return widget_value(prompt, extra_pnginfo, node_name, name)

        try:
            result = evaluate(expression, {"a": a, "b": b, "c": c}, widget)
            int_result, float_result = int(result), float(result)
        except (RefusedExpression, OverflowError) as exc:
            raise InvalidInput("expression", f"{expression!r}: {exc}") from exc
        return {"ui": {"value": [result]}, "result": (int_result, float_result)}
