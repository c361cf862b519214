"""V3 dynamic inputs (io.Autogrow, io.DynamicCombo, io.MatchType): listed in /object_info's shape as ComfyUI lists
them, their inputs in a graph named by path (``images.image0``, ``mode.width``) and validated like any input, and
their values reaching ``execute`` nested (``images={"image0": ...}``, ``mode={"mode": "fixed", "width": ...}``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from visionatrix.errors import InvalidGraph
from visionatrix.executor.run import Executor, ExecutorSettings
from visionatrix.nodes.registry import NodeRegistry
from visionatrix.nodes.v3 import io

PACKS = Path(__file__).parent / "fixtures" / "v3_packs"


@pytest.fixture(scope="module")
def registry() -> NodeRegistry:
    registry = NodeRegistry()
    registry.load_packs([PACKS])
    assert not registry.failures, registry.failures
    return registry


@pytest.fixture
def executor(registry, tmp_path):
    ex = Executor(registry, ExecutorSettings(device="cpu", output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp",
                                             input_dir=tmp_path / "in"))
    yield ex
    ex.close()


def _show() -> Any:
    pack = next(m for name, m in sys.modules.items() if name.startswith("vix_custom_nodes.v3_pack_"))
    pack.Show.seen.clear()
    return pack.Show


def _gradient(width: int, height: int) -> dict[str, Any]:
    return {"class_type": "V3Gradient", "inputs": {"width": width, "height": height}}


def _errors(executor: Executor, prompt: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    with pytest.raises(InvalidGraph) as invalid:
        executor.validate(prompt).raise_for_errors()
    return {node: sorted((e["type"], e["details"]) for e in entry["errors"])
            for node, entry in invalid.value.node_errors.items()}


def test_object_info_lists_dynamic_inputs_as_comfyui_does(registry):
    stack = registry.describe("V3ImageStack")
    assert stack["input"]["required"] == {"images": ["COMFY_AUTOGROW_V3", {"template": {
        "input": {"required": {"image": ["IMAGE", {}]}}, "prefix": "image", "min": 1, "max": 4}}]}
    summed = registry.describe("V3SumNamed")["input"]["required"]["values"]
    assert summed == ["COMFY_AUTOGROW_V3", {"template": {
        "input": {"required": {"n": ["INT", {"min": 0, "max": 100, "forceInput": True}]}},
        "names": ["a", "b", "c"], "min": 0}}]
    size = registry.describe("V3Size")["input"]["required"]
    assert size["mode"] == ["COMFY_DYNAMICCOMBO_V3", {"options": [
        {"key": "scale", "inputs": {"required": {"factor": ["FLOAT", {"default": 1.0, "min": 0.25, "max": 4.0}]}}},
        {"key": "fixed", "inputs": {"required": {"width": ["INT", {"min": 1, "max": 64}],
                                                 "height": ["INT", {"min": 1, "max": 64}]}}}]}]
    switch = registry.describe("V3Switch")
    template = {"template_id": "switch", "allowed_types": "IMAGE,MASK"}
    assert switch["input"]["required"]["on_true"] == ["COMFY_MATCHTYPE_V3", {"template": template}]
    assert switch["output_matchtypes"] == ["switch"] and switch["output_name"] == ["MATCHTYPE"]
    assert "output_matchtypes" not in stack


async def test_autogrow_values_reach_execute_as_a_dict_of_the_given_slots(executor):
    show = _show()
    prompt = {"1": _gradient(4, 3), "2": _gradient(4, 3), "3": _gradient(4, 3),
              "4": {"class_type": "V3ImageStack", "inputs": {"images.image0": ["1", 0], "images.image2": ["3", 0]}},
              "5": {"class_type": "V3Show", "inputs": {"value": ["4", 1]}},
              "6": {"class_type": "V3Show", "inputs": {"value": ["4", 2]}},
              "7": {"class_type": "V3Show", "inputs": {"value": ["4", 0]}}}
    await executor.execute(prompt)
    seen = {node: value for node, _, value in show.seen}
    assert seen["5"] == 2 and seen["6"] == "image0,image2"  # a gap is left out, the order is the slots'
    assert seen["7"].shape == (2, 3, 4, 3)


async def test_named_autogrow_slots_take_constants_and_none_given_is_an_empty_dict(executor):
    show = _show()
    prompt = {"1": {"class_type": "V3SumNamed", "inputs": {"values.a": 4, "values.c": "30"}},
              "2": {"class_type": "V3SumNamed", "inputs": {}},
              "3": {"class_type": "V3Show", "inputs": {"value": ["1", 0]}},
              "4": {"class_type": "V3Show", "inputs": {"value": ["2", 0]}}}
    result = await executor.execute(prompt)
    assert sorted((node, value) for node, _, value in show.seen) == [("3", 34), ("4", 0)]
    again = await executor.execute(prompt)  # fingerprint_inputs gets the nested dict too: both come from the cache
    assert set(again.cached) == {"1", "2"} and set(result.executed) >= {"1", "2"}


async def test_a_dynamic_combo_brings_the_chosen_options_inputs(executor):
    show = _show()
    prompt = {"1": _gradient(8, 4),
              "2": {"class_type": "V3Size", "inputs": {"image": ["1", 0], "mode": "fixed", "mode.width": 16,
                                                       "mode.height": "12", "mode.factor": 99}},
              "3": {"class_type": "V3Size", "inputs": {"image": ["1", 0], "mode": "scale", "mode.factor": 0.5}},
              "4": {"class_type": "V3Show", "inputs": {"value": ["2", 0]}},
              "5": {"class_type": "V3Show", "inputs": {"value": ["2", 1]}},
              "6": {"class_type": "V3Show", "inputs": {"value": ["3", 0]}},
              "7": {"class_type": "V3Show", "inputs": {"value": ["3", 1]}}}
    await executor.execute(prompt)  # mode.factor of "fixed" is no input of that option: ignored, not checked
    assert {node: value for node, _, value in show.seen} == {"4": 16, "5": 12, "6": 4, "7": 2}


async def test_a_match_type_output_feeds_inputs_of_its_allowed_types(executor):
    show = _show()
    prompt = {"1": _gradient(4, 3), "2": _gradient(5, 2),
              "3": {"class_type": "V3Switch", "inputs": {"first": False, "on_true": ["1", 0], "on_false": ["2", 0]}},
              "4": {"class_type": "V3Scale", "inputs": {"image": ["3", 0], "factor": 2.0}},
              "5": {"class_type": "V3Show", "inputs": {"value": ["4", 0]}}}
    await executor.execute(prompt)
    [(_, _, value)] = show.seen
    assert torch.allclose(value, torch.linspace(0, 1, 2 * 5 * 3).reshape(1, 2, 5, 3) * 2)  # the second one


def test_dynamic_inputs_are_validated_like_any_input(executor):
    prompt = {"1": _gradient(4, 3),
              "n": {"class_type": "V3Combine", "inputs": {"mode": "add", "a": 1, "b": 2}},
              "2": {"class_type": "V3ImageStack", "inputs": {"images.image1": ["n", 0]}},
              "3": {"class_type": "V3Size", "inputs": {"image": ["1", 0], "mode": "stretch"}},
              "4": {"class_type": "V3Size", "inputs": {"image": ["1", 0], "mode": "fixed", "mode.width": 65}},
              "5": {"class_type": "V3Switch", "inputs": {"first": True, "on_true": ["1", 0], "on_false": ["n", 0]}},
              "6": {"class_type": "V3SumNamed", "inputs": {"values.b": 101}}}
    for node in ("2", "3", "4", "5", "6"):
        prompt[f"show{node}"] = {"class_type": "V3Show", "inputs": {"value": [node, 0]}}
    errors = _errors(executor, prompt)
    assert errors["2"] == [("required_input_missing", "images.image0"),
                           ("return_type_mismatch", "images.image1, received_type(INT) mismatch input_type(IMAGE)")]
    assert errors["3"] == [("value_not_in_list", "mode: 'stretch' not in ['scale', 'fixed']")]
    assert errors["4"] == [("required_input_missing", "mode.height"), ("value_bigger_than_max", "mode.width")]
    assert errors["5"] == [("return_type_mismatch",
                            "on_false, received_type(INT) mismatch input_type(IMAGE,MASK)")]
    assert errors["6"] == [("value_bigger_than_max", "values.b")]
    assert set(errors) == {"2", "3", "4", "5", "6"}


def test_bad_dynamic_schemas_are_refused_with_clear_errors():
    with pytest.raises(ValueError, match="max must be 1 to 100"):
        io.Autogrow.TemplatePrefix(io.Image.Input("x"), prefix="x", max=101)
    with pytest.raises(TypeError, match="cannot be a dynamic input"):
        io.Autogrow.TemplateNames(io.Autogrow.Input("y", io.Autogrow.TemplateNames(io.Int.Input("z"), ["a"])), ["b"])
    with pytest.raises(ValueError, match="keys must be unique"):
        io.DynamicCombo.Input("m", options=[io.DynamicCombo.Option("a"), io.DynamicCombo.Option("a")])
    with pytest.raises(ValueError, match="must be V3 types"):
        io.MatchType.Template("t", allowed_types=["IMAGE"])
