"""MathExpression|pysssss: results of the original's language, IMAGE/LATENT sizes, widget lookups, and refusals
of everything else (no eval)."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from comfy_nodes.community import NODE_CLASS_MAPPINGS, MathExpressionPysssss
from visionatrix.errors import InvalidInput
from visionatrix.executor.run import Executor, ExecutorSettings
from visionatrix.nodes.registry import NodeRegistry

ROOT = Path(__file__).resolve().parents[3]


def run(expression, **inputs):
    return MathExpressionPysssss().evaluate(expression, **inputs)["result"]


def test_matches_the_original_interface():
    assert NODE_CLASS_MAPPINGS["MathExpression|pysssss"] is MathExpressionPysssss
    spec = MathExpressionPysssss.INPUT_TYPES()
    assert spec["required"]["expression"][0] == "STRING"
    assert spec["optional"] == dict.fromkeys("abc", ("INT,FLOAT,IMAGE,LATENT",))
    assert spec["hidden"] == {"extra_pnginfo": "EXTRA_PNGINFO", "prompt": "PROMPT"}
    assert MathExpressionPysssss.RETURN_TYPES == ("INT", "FLOAT")
    assert MathExpressionPysssss.OUTPUT_NODE is True


@pytest.mark.parametrize(("expression", "inputs", "expected"), [
    ("1024-a", {"a": 64}, (960, 960.0)),           # flux1_extend.json
    ("a/2", {"a": 64}, (32, 32.0)),
    ("a/2", {"a": 65}, (32, 32.5)),                # int() truncates
    ("min(a,8)*25", {"a": 12}, (200, 200.0)),
    ("-a / 4", {"a": 10}, (-2, -2.5)),
    ("a // 3 + b % 4", {"a": 10, "b": 7}, (6, 6.0)),
    ("2 ** 10 ^ 3", {}, (1027, 1027.0)),           # ^ is xor, as in Python
    ("(a & 6) | 1 << 4 >> 2", {"a": 7}, (6, 6.0)),  # 6 | ((1 << 4) >> 2)
    ("~a", {"a": 5}, (-6, -6.0)),
    ("a > b", {"a": 3, "b": 2}, (1, 1.0)),
    ("a <= b", {"a": 3, "b": 2}, (0, 0.0)),
    ("a < b < c", {"a": 1, "b": 3, "c": 2}, (0, 0.0)),
    ("a and not b or c", {"a": 1, "b": 0, "c": 0}, (1, 1.0)),
    ("iif(a > 5, 10, 20)", {"a": 6}, (10, 10.0)),
    ("round(a, 1) * 10", {"a": 2.345}, (23, 23.0)),
    ("ceil(a) + floor(b) + int(c)", {"a": 1.2, "b": 2.8, "c": -3.7}, (1, 1.0)),
    ("sqrt(a) + max(1, 2, b)", {"a": 16, "b": 9.5}, (13, 13.5)),
    ("True + 1", {}, (2, 2.0)),
    ("a\n+\r\nb", {"a": 1, "b": 2}, (3, 3.0)),
])
def test_computes_the_original_language(expression, inputs, expected):
    assert run(expression, **inputs) == expected


def test_reports_the_value_to_the_ui():
    assert MathExpressionPysssss().evaluate("a * 1.5", a=3)["ui"] == {"value": [4.5]}


def test_reads_image_and_latent_sizes():
    picture = torch.zeros(1, 48, 80, 3)
    latent = {"samples": torch.zeros(1, 4, 12, 16)}
    assert run("a.width + a.height", a=picture) == (128, 128.0)
    assert run("b.width * 1000 + b.height", b=latent) == (128096, 128096.0)
    with pytest.raises(InvalidInput, match=r"a\.width or a\.height"):
        run("a + 1", a=picture)


def test_reads_a_widget_of_another_node_by_name_or_title():
    prompt = {"7": {"inputs": {"steps": 30, "sampler_name": "euler"}}}
    workflow = {"workflow": {"nodes": [{"id": 7, "type": "KSampler", "title": "Main sampler"}]}}
    assert run("KSampler.steps / 2", prompt=prompt, extra_pnginfo=workflow) == (15, 15.0)
    with pytest.raises(InvalidInput, match="not a number"):
        run("KSampler.sampler_name", prompt=prompt, extra_pnginfo=workflow)
    with pytest.raises(InvalidInput, match="node not found"):
        run("Other.steps", prompt=prompt, extra_pnginfo=workflow)


def test_random_functions_stay_in_range_and_are_never_cached():
    for _ in range(20):
        assert 3 <= run("randomint(3, 5)")[0] <= 5
        assert run("randomchoice(2, 4, 8)")[0] in (2, 4, 8)
    assert math.isnan(MathExpressionPysssss.IS_CHANGED("randomint(1, 2)"))
    assert MathExpressionPysssss.IS_CHANGED("a + 1") == "a + 1"


@pytest.mark.parametrize(("expression", "words"), [
    ("__import__('os').system('true')", "only the functions"),
    ("().__class__", "only a.width"),
    ("a.__class__", "node not found"),
    ("[a][0]", "Subscript is not allowed"),
    ("lambda: 1", "Lambda is not allowed"),
    ("'text'", "only numbers"),
    ("d + 1", "unknown name 'd'"),
    ("b + 1", "not connected"),
    ("a / 0", "division by zero"),
    ("9 ** 9 ** 9", "too large"),
    ("1 << 100000", "too large"),
    ("10.0 ** 400", "cannot be computed"),
    ("(-8) ** 0.5", "not a real number"),
    ("sqrt(-1)", "negative"),
    ("round(a, 1000)", "digits"),
    ("1.5 ^ 2", "needs integers"),
    ("min(1)", "2 or more"),
    ("max(a=1, b=2)", "positional"),
    ("a +", "not an expression"),
    ("a" + " + a" * 600, "longer than"),
    ("-" * 80 + "a", "deeper"),
])
def test_refuses_what_is_not_in_the_language_naming_the_input(expression, words):
    with pytest.raises(InvalidInput) as caught:
        run(expression, a=1)
    assert caught.value.input_name == "expression"
    assert words in str(caught.value)


def test_feeds_int_outputs_to_the_next_node_in_a_graph(tmp_path):
    """As flux1_extend.json wires it: a form value -> '1024-a' -> an INT input (here EmptyImage's width)."""
    registry = NodeRegistry()
    registry.load_packs([], core_dir=ROOT / "comfy_nodes")
    graph = {
        "1": {"class_type": "PrimitiveInt", "inputs": {"value": 1000}},
        "2": {"class_type": "MathExpression|pysssss", "inputs": {"expression": "1024-a", "a": ["1", 0]}},
        "3": {"class_type": "EmptyImage", "inputs": {"width": ["2", 0], "height": 8, "batch_size": 1, "color": 0}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "math"}},
    }
    executor = Executor(registry, ExecutorSettings(device="cpu", input_dir=tmp_path, output_dir=tmp_path / "out",
                                                   temp_dir=tmp_path / "temp"))
    try:
        result = asyncio.run(executor.execute(graph))
    finally:
        executor.close()
    assert result.ui["2"] == {"value": [24]}
    (item,) = result.ui["4"]["images"]
    with Image.open(tmp_path / "out" / item["subfolder"] / item["filename"]) as saved:
        assert saved.size == (24, 8)
