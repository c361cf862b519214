"""The community pack: third-party nodes the Visionatrix flows use (``Evaluate Integers``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from PIL import Image

from comfy_nodes.community import NODE_CLASS_MAPPINGS, EvaluateIntegers
from visionatrix.errors import InvalidInput
from visionatrix.executor.run import Executor, ExecutorSettings
from visionatrix.nodes.registry import NodeRegistry

ROOT = Path(__file__).resolve().parents[3]


def test_evaluate_integers_matches_the_original_interface():
    assert NODE_CLASS_MAPPINGS["Evaluate Integers"] is EvaluateIntegers
    spec = EvaluateIntegers.INPUT_TYPES()
    assert list(spec["required"]) == ["python_expression", "print_to_console"]
    assert spec["required"]["python_expression"][1]["default"] == "((a + b) - c) / 2"
    assert spec["required"]["print_to_console"] == (["False", "True"],)
    assert {name: (kind, options["min"], options["max"]) for name, (kind, options) in spec["optional"].items()} \
        == dict.fromkeys("abc", ("INT", -48000, 48000))
    assert EvaluateIntegers.RETURN_TYPES == ("INT", "FLOAT", "STRING")
    assert EvaluateIntegers.OUTPUT_NODE is True


@pytest.mark.parametrize(("expression", "a", "b", "c", "expected"), [
    ("a//3", 45, 0, 0, (15, 15.0, "15")),       # what the corpus flows compute (steps for AlignYourSteps)
    ("a//3", 31, 0, 0, (10, 10.0, "10")),
    ("((a + b) - c) / 2", 7, 2, 4, (2, 2.5, "2.5")),
    ("-a / 4", 10, 0, 0, (-2, -2.5, "-2.5")),   # int() truncates toward zero, as the original
    ("max(a, b) * 2 + c % 3", 3, 8, 7, (17, 17.0, "17")),
])
def test_evaluate_integers_computes_int_float_and_string(expression, a, b, c, expected):
    assert EvaluateIntegers().evaluate(expression, "False", a=a, b=b, c=c) == expected


def test_evaluate_integers_defaults_unconnected_variables_to_zero():
    assert EvaluateIntegers().evaluate("a + b + c + 1", "True") == (1, 1.0, "1")


@pytest.mark.parametrize(("expression", "words"), [
    ("__import__('os').system('true')", "only the functions"),
    ("a if b else c", "IfExp"),
    ("a / b", "division by zero"),
    ("d + 1", "unknown name 'd'"),
])
def test_evaluate_integers_refuses_what_is_not_arithmetic_naming_the_input(expression, words):
    with pytest.raises(InvalidInput) as caught:
        EvaluateIntegers().evaluate(expression, "False", a=1, b=0, c=0)
    assert caught.value.input_name == "python_expression"
    assert words in str(caught.value)


def test_evaluate_integers_refuses_a_non_integer_variable():
    with pytest.raises(InvalidInput) as caught:
        EvaluateIntegers().evaluate("a", "False", a=1.5)
    assert caught.value.input_name == "a"


def test_evaluate_integers_feeds_an_int_input_in_a_graph(tmp_path):
    """In a graph as the corpus flows wire it: a form value -> ``a//3`` -> an INT input of the next node."""
    registry = NodeRegistry()
    registry.load_packs([], core_dir=ROOT / "comfy_nodes")
    graph = {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 45}},
        "2": {"class_type": "Evaluate Integers",
              "inputs": {"python_expression": "a//3", "print_to_console": "False", "a": ["1", 0], "b": 0, "c": 0}},
        "3": {"class_type": "EmptyImage", "inputs": {"width": ["2", 0], "height": 8, "batch_size": 1, "color": 0}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "evaluated"}},
    }
    executor = Executor(registry, ExecutorSettings(device="cpu", input_dir=tmp_path, output_dir=tmp_path / "out",
                                                   temp_dir=tmp_path / "temp"))
    try:
        result = asyncio.run(executor.execute(graph))
    finally:
        executor.close()
    (item,) = result.ui["4"]["images"]
    with Image.open(tmp_path / "out" / item["subfolder"] / item["filename"]) as image:
        assert image.size == (15, 8)
