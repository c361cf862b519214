"""A pack written with comfy_api.latest (V3: io.ComfyNode, define_schema, execute, comfy_entrypoint) loads through
the registry, describes itself in /object_info's shape, validates and runs through the Executor."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from visionatrix.errors import InvalidGraph
from visionatrix.executor.run import Executor, ExecutorSettings
from visionatrix.nodes.registry import NodeRegistry

PACKS = Path(__file__).parent / "fixtures" / "v3_packs"


@pytest.fixture
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


def _pack():
    return next(m for name, m in sys.modules.items() if name.startswith("vix_custom_nodes.v3_pack"))


def _show():
    return _pack().Show


def test_the_extensions_nodes_are_registered_under_their_node_ids(registry):
    assert {"V3Scale", "V3Combine", "V3Show", "V3Pick", "V3SumOfProducts", "V3Types"} <= set(registry.names())
    assert registry.get("V3Scale").pack == "v3_pack"


def test_object_info_has_the_v1_shape_of_the_schemas(registry):
    scale = registry.describe("V3Scale")
    assert scale["input"] == {
        "required": {"image": ["IMAGE", {}],
                     "factor": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 4.0, "step": 0.5, "display": "slider"}]},
        "optional": {"mask": ["MASK", {}]}}
    assert scale["input_order"] == {"required": ["image", "factor"], "optional": ["mask"]}
    assert scale["output"] == ["IMAGE", "INT"] and scale["output_name"] == ["scaled", "WIDTH"]
    assert (scale["display_name"], scale["category"], scale["description"]) == ("Scale (V3)", "test/v3",
                                                                                "Multiplies pixels.")
    assert scale["python_module"] == "custom_nodes.v3_pack" and scale["output_node"] is False
    combine = registry.describe("V3Combine")
    assert combine["input"]["required"]["mode"] == [["add", "mul"], {"default": "add"}]
    assert combine["input"]["required"]["b"] == ["INT", {"default": 2, "min": -100, "max": 100, "tooltip": "second"}]
    assert combine["input"]["optional"] == {"negate": ["BOOLEAN", {"default": False}],
                                            "label": ["STRING", {"default": "", "multiline": True}]}
    assert combine["display_name"] == "V3Combine"
    show = registry.describe("V3Show")
    assert show["output_node"] is True and show["output"] == []
    assert show["input"] == {"required": {"value": ["*", {}]},
                             "hidden": {"unique_id": "UNIQUE_ID", "prompt": "PROMPT"}}
    types = registry.describe("V3Types")
    assert {k: v[0] for k, v in types["input"]["optional"].items()} == {
        "latent": "LATENT", "conditioning": "CONDITIONING", "model": "MODEL", "clip": "CLIP", "vae": "VAE",
        "mask": "MASK", "image": "IMAGE", "either": "IMAGE,MASK", "thing": "MY_THING"}
    assert types["output_is_list"] == [True]


async def test_v3_nodes_run_in_a_graph_with_hidden_inputs_ui_and_async_execute(executor):
    _show().seen.clear()
    prompt = {"1": {"class_type": "V3Combine", "inputs": {"mode": "mul", "a": 3, "b": -4}},
              "2": {"class_type": "V3Combine", "inputs": {"mode": "add", "a": ["1", 0], "b": 5, "negate": True,
                                                          "label": "n="}},
              "3": {"class_type": "V3Show", "inputs": {"value": ["2", 1]}},
              "4": {"class_type": "V3Show", "inputs": {"value": ["2", 0]}}}
    result = await executor.execute(prompt)
    assert sorted(_show().seen) == [("3", True, "n=7"), ("4", True, 7)]
    assert result.ui["3"] == {"text": ["3=n=7"]} and result.ui["4"] == {"text": ["4=7"]}


async def test_an_image_node_and_lazy_inputs(executor):
    _show().seen.clear()
    image = torch.linspace(0, 1, 2 * 3 * 4 * 3).reshape(2, 3, 4, 3)
    prompt = {"1": {"class_type": "V3Pick", "inputs": {"first": False, "on_true": ["9", 0], "on_false": ["8", 0]}},
              "8": {"class_type": "V3Combine", "inputs": {"mode": "add", "a": 2, "b": 2}},
              "9": {"class_type": "V3Combine", "inputs": {"mode": "add", "a": 7, "b": 6}},
              "2": {"class_type": "V3Show", "inputs": {"value": ["1", 0]}}}
    result = await executor.execute(prompt)
    assert _show().seen == [("2", True, 4)] and "9" not in result.executed  # the branch not chosen never ran
    scale = executor.registry.node_class("V3Scale")()
    out = getattr(scale, scale.FUNCTION)(image=image, factor=0.5)
    assert torch.equal(out["result"][0], image * 0.5) and out["result"][1] == 4


async def test_a_v3_node_expanding_into_v3_nodes(executor):
    _show().seen.clear()
    prompt = {"1": {"class_type": "V3SumOfProducts", "inputs": {"a": 3, "b": 4}},
              "2": {"class_type": "V3Show", "inputs": {"value": ["1", 0]}}}
    result = await executor.execute(prompt)
    assert _show().seen == [("2", True, 24)]
    assert result.executed == ["1.0.1", "1.0.2", "1", "2"]


def test_validation_uses_the_schema_bounds_combos_and_validate_inputs(executor):
    # validate_inputs takes a and b, so (as in ComfyUI) their bounds are left to it
    prompt = {"1": {"class_type": "V3Combine", "inputs": {"mode": "div", "a": 101, "b": 2}},
              "2": {"class_type": "V3Combine", "inputs": {"mode": "add", "a": 7, "b": 7}},
              "5": {"class_type": "V3SumOfProducts", "inputs": {"a": 51, "b": 1}},
              "3": {"class_type": "V3Show", "inputs": {"value": ["1", 0]}},
              "4": {"class_type": "V3Show", "inputs": {"value": ["2", 0]}},
              "6": {"class_type": "V3Show", "inputs": {"value": ["5", 0]}}}
    with pytest.raises(InvalidGraph) as invalid:
        executor.validate(prompt).raise_for_errors()
    errors = {node: sorted(e["type"] for e in v["errors"]) for node, v in invalid.value.node_errors.items()}
    assert errors == {"1": ["value_not_in_list"], "2": ["custom_validation_failed"], "5": ["value_bigger_than_max"]}
    assert "may not both be 7" in invalid.value.node_errors["2"]["errors"][0]["details"]


def test_comfy_api_and_graph_utils_stand_ins_are_registered_for_packs(registry):
    from comfy_api.latest import io as latest_io
    from comfy_execution.graph_utils import GraphBuilder

    from visionatrix.nodes.v3 import graph_utils, io

    assert latest_io is io and GraphBuilder is graph_utils.GraphBuilder
    assert sys.modules["comfy_api.v0_0_2"].io is io


def test_a_pack_without_mappings_or_entrypoint_is_a_recorded_failure(tmp_path):
    (tmp_path / "empty_pack.py").write_text("X = 1\n")
    registry = NodeRegistry()
    registry.load_packs([tmp_path])
    assert [f.pack for f in registry.failures] == ["empty_pack"]
    assert "comfy_entrypoint" in registry.failures[0].error


def test_a_v3_class_in_node_class_mappings_is_registered_in_its_v1_shape(registry):
    original = registry.node_class("V3Combine").__mro__[1]
    other = NodeRegistry()
    other.register_mappings({"Combine2": original}, None, python_module="custom_nodes.x", pack="x")
    node_class = other.node_class("Combine2")
    assert node_class.RETURN_TYPES == ("INT", "STRING") and node_class.FUNCTION == "_vix_execute"
    assert other.describe("Combine2")["input"]["required"]["mode"][0] == ["add", "mul"]


async def test_preview_image_ui_saves_temp_pngs_and_fingerprint_inputs_drive_the_cache(executor, tmp_path):
    from PIL import Image

    prompt = {"1": {"class_type": "V3Gradient", "inputs": {"width": 5, "height": 2}},
              "2": {"class_type": "V3Preview", "inputs": {"images": ["1", 0]}}}
    _pack().Gradient.calls = 0
    first = await executor.execute(prompt)
    (saved,) = first.ui["2"]["images"]
    assert saved["type"] == "temp" and saved["subfolder"] == ""
    with Image.open(tmp_path / "tmp" / saved["filename"]) as png:
        assert png.size == (5, 2)
    again = await executor.execute(prompt)
    assert _pack().Gradient.calls == 1 and again.cached == ["1"]
