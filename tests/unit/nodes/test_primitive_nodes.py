"""The primitives pack: constants, string nodes, image size and the safe math expression."""

from __future__ import annotations

import time

import pytest
import torch

from comfy_nodes.primitives import (
    GetImageSize,
    MathExpression,
    PrimitiveBoolean,
    PrimitiveFloat,
    PrimitiveInt,
    PrimitiveString,
    PrimitiveStringMultiline,
    StringConcatenate,
    StringReplace,
)
from visionatrix.errors import InvalidInput


@pytest.mark.parametrize(
    ("node_class", "value"),
    [
        (PrimitiveInt, -7),
        (PrimitiveFloat, 0.3333),
        (PrimitiveString, "one line"),
        (PrimitiveStringMultiline, "two\nlines"),
        (PrimitiveBoolean, True),
    ],
)
def test_primitive_outputs_its_value(node_class, value):
    assert node_class().run(value=value) == (value,)
    assert list(node_class.INPUT_TYPES()["required"]) == ["value"]


def test_primitive_string_multiline_declares_a_multiline_widget():
    assert PrimitiveStringMultiline.INPUT_TYPES()["required"]["value"][1]["multiline"] is True


def test_string_concatenate_joins_with_the_delimiter():
    assert StringConcatenate().run(string_a="cat", string_b="hat", delimiter=", ") == ("cat, hat",)


def test_string_concatenate_refuses_a_non_text_input_naming_it():
    with pytest.raises(InvalidInput) as caught:
        StringConcatenate().run(string_a="cat", string_b=3, delimiter="")
    assert caught.value.input_name == "string_b"


def test_string_replace_replaces_every_occurrence_as_plain_text():
    result = StringReplace().run(string="a {prompt}. b {prompt}.", find="{prompt}", replace="fox")
    assert result == ("a fox. b fox.",)
    assert StringReplace().run(string="a.b", find=".", replace="-") == ("a-b",)


def test_string_replace_with_empty_find_leaves_the_text_unchanged():
    assert StringReplace().run(string="abc", find="", replace="x") == ("abc",)


def test_get_image_size_outputs_width_height_and_batch_size():
    assert GetImageSize().run(image=torch.zeros((3, 48, 64, 3))) == (64, 48, 3)


def test_get_image_size_refuses_a_tensor_that_is_not_an_image_batch():
    with pytest.raises(InvalidInput) as caught:
        GetImageSize().run(image=torch.zeros((48, 64)))
    assert caught.value.input_name == "image"


def _math(expression: str, **variables):
    return MathExpression().run(expression=expression, **variables)


@pytest.mark.parametrize(
    ("expression", "variables", "expected_int", "expected_float"),
    [
        ("a + b * 2", {"a": 1, "b": 3}, 7, 7.0),
        ("(a + b) * 2", {"a": 1, "b": 3}, 8, 8.0),
        ("7 / 2", {}, 3, 3.5),
        ("-7 // 2", {}, -4, -4.0),
        ("7 % 3", {}, 1, 1.0),
        ("2 ** 10", {}, 1024, 1024.0),
        ("2 ** -1", {}, 0, 0.5),
        ("-a", {"a": 2.5}, -2, -2.5),
        ("+a - -b", {"a": 1, "b": 2}, 3, 3.0),
        ("c * 1.5", {"c": 4}, 6, 6.0),
        ("min(a, b, c)", {"a": 3, "b": 1, "c": 2}, 1, 1.0),
        ("max(a, 10)", {"a": 3}, 10, 10.0),
        ("abs(-3.25)", {}, 3, 3.25),
        ("round(2.6)", {}, 3, 3.0),
        ("round(2.675, 1)", {}, 2, 2.7),
        ("floor(a / 64) * 64", {"a": 1000}, 960, 960.0),
        ("ceil(a / 64) * 64", {"a": 1000}, 1024, 1024.0),
        ("sqrt(a * a + b * b)", {"a": 3, "b": 4}, 5, 5.0),
    ],
)
def test_math_expression_computes_arithmetic(expression, variables, expected_int, expected_float):
    assert _math(expression, **variables) == (expected_int, pytest.approx(expected_float))


def test_math_expression_outputs_int_truncated_toward_zero():
    assert _math("a * 0.9", a=-5) == (-4, pytest.approx(-4.5))


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os')",
        "__import__('os').system('true')",
        "(1).__class__",
        "(1).__class__.__bases__[0].__subclasses__()",
        "a.real",
        "open('/etc/passwd')",
        "eval('1')",
        "x + 1",
        "True + 1",
        "'a' * 3",
        "[1, 2]",
        "1 if a else 2",
        "lambda: 1",
        "a < b",
        "1 << 10",
        "3 & 1",
        "min(*[1, 2])",
        "round(a, ndigits=1)",
        "1j * 1j",
        "a = 1",
        "",
    ],
)
def test_math_expression_refuses_anything_but_arithmetic(expression):
    with pytest.raises(InvalidInput) as caught:
        _math(expression, a=1, b=2)
    assert caught.value.input_name == "expression"


@pytest.mark.parametrize(
    "expression",
    [
        "9**9**9",
        "10**10**10",
        "(2**1000)**1000",
        "2**1024 * 2**1024",
        "1e308 * 10",
        "2.0 ** 100000",
        "round(5, -10**9)",
    ],
)
def test_math_expression_refuses_huge_results_quickly(expression):
    started = time.monotonic()
    with pytest.raises(InvalidInput) as caught:
        _math(expression)
    assert caught.value.input_name == "expression"
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("expression", ["1 / 0", "1 // 0", "1 % 0", "sqrt(-1)", "(-8) ** 0.5", "0 ** -1"])
def test_math_expression_reports_undefined_results_as_invalid_expression(expression):
    with pytest.raises(InvalidInput) as caught:
        _math(expression)
    assert caught.value.input_name == "expression"


def test_math_expression_refuses_deep_nesting():
    with pytest.raises(InvalidInput, match="nested"):
        _math("-" * 200 + "1")


def test_math_expression_refuses_a_variable_that_is_not_connected():
    with pytest.raises(InvalidInput, match="'b'"):
        _math("a + b", a=1)


def test_math_expression_refuses_a_non_number_variable_naming_it():
    with pytest.raises(InvalidInput) as caught:
        _math("a + 1", a="1")
    assert caught.value.input_name == "a"


def test_math_expression_declares_number_inputs_a_b_c():
    optional = MathExpression.INPUT_TYPES()["optional"]
    assert {name: spec[0] for name, spec in optional.items()} == {"a": "INT,FLOAT", "b": "INT,FLOAT", "c": "INT,FLOAT"}
    assert MathExpression.RETURN_TYPES == ("INT", "FLOAT")
