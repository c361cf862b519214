"""The pixel limit counts the whole batch (batch * width * height) for every node that makes images or latents,
and linked numbers are held to the receiving input's min/max and the pixel limit before the node runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from comfy_nodes.diffusion.latent_nodes import EmptyLatentImage, RepeatLatentBatch
from visionatrix.errors import InvalidGraph, InvalidInput, NodeFailed
from visionatrix.executor.run import Executor, ExecutorSettings
from visionatrix.nodes.context import NodeContext, use
from visionatrix.nodes.registry import NodeRegistry

ROOT = Path(__file__).resolve().parents[3]
LIMIT = 20_000


@pytest.fixture(scope="module")
def registry() -> NodeRegistry:
    registry = NodeRegistry()
    registry.load_packs([], core_dir=ROOT / "comfy_nodes")
    return registry


@pytest.fixture
def executor(registry: NodeRegistry, tmp_path: Path) -> Iterator[Executor]:
    ex = Executor(registry, ExecutorSettings(device="cpu", input_dir=tmp_path, output_dir=tmp_path / "out",
                                             temp_dir=tmp_path / "temp", max_image_pixels=LIMIT))
    yield ex
    ex.close()


def empty_image(width, height, batch) -> dict:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": width, "height": height, "batch_size": batch,
                                                      "color": 0}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }


@pytest.mark.parametrize("class_type", ["EmptyImage", "EmptyLatentImage", "EmptySD3LatentImage"])
def test_a_constant_batch_over_the_pixel_limit_is_refused_before_anything_runs(executor, class_type):
    prompt = empty_image(128, 128, 1)  # 16 384 pixels: under the limit alone
    prompt["1"]["class_type"] = class_type
    del prompt["1"]["inputs"]["color"]
    if class_type == "EmptyImage":
        prompt["1"]["inputs"]["color"] = 0
    assert "1" not in executor.validate(prompt).node_errors  # (a LATENT cannot feed PreviewImage: node 2 is wrong)
    prompt["1"]["inputs"]["batch_size"] = 2  # 32 768 pixels in all
    validated = executor.validate(prompt)
    (problem,) = validated.node_errors["1"]["errors"]
    assert problem["type"] == "image_too_large"
    assert problem["extra_info"]["input_name"] == "batch_size"
    assert "2 x 128x128 = 32768 pixels exceeds the limit of 20000 pixels" in problem["details"]


async def test_linked_values_are_checked_against_the_inputs_max_before_the_node_runs(executor, tmp_path):
    prompt = empty_image(["3", 0], 8, 1)
    prompt["3"] = {"class_type": "PrimitiveInt", "inputs": {"value": 20_000}}  # EmptyImage's width max: 16384
    assert executor.validate(prompt).ok
    with pytest.raises(NodeFailed) as failed:
        await executor.execute(prompt)
    assert failed.value.node_id == "1" and failed.value.input_name == "width"
    assert "linked value 20000 from node 3 is bigger than the max of 16384" in str(failed.value)
    assert not (tmp_path / "temp").exists() or not any((tmp_path / "temp").rglob("*.png"))


async def test_linked_values_are_checked_against_the_inputs_min(executor):
    prompt = empty_image(8, 8, ["3", 0])
    prompt["3"] = {"class_type": "PrimitiveInt", "inputs": {"value": 0}}  # batch_size min: 1
    with pytest.raises(NodeFailed) as failed:
        await executor.execute(prompt)
    assert failed.value.input_name == "batch_size" and "smaller than the min of 1" in str(failed.value)


async def test_a_linked_batch_size_counts_against_the_pixel_limit(executor):
    prompt = empty_image(100, 100, ["3", 0])
    prompt["3"] = {"class_type": "PrimitiveInt", "inputs": {"value": 3}}
    with pytest.raises(NodeFailed) as failed:
        await executor.execute(prompt)
    assert failed.value.node_id == "1" and failed.value.input_name == "batch_size"
    assert "3 x 100x100 = 30000 pixels exceeds the limit of 20000" in str(failed.value)
    prompt["3"]["inputs"]["value"] = 2
    result = await executor.execute(prompt)
    assert "1" in result.executed


async def test_resizing_a_batch_counts_every_image_of_it(executor):
    prompt = empty_image(10, 10, 4)
    prompt["2"] = {"class_type": "ImageScaleBy", "inputs": {"image": ["1", 0], "upscale_method": "nearest-exact",
                                                            "scale_by": 6.0}}  # 60x60 = 3600 each, 14 400 in all
    prompt["4"] = {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}
    await executor.execute(prompt)
    prompt["2"]["inputs"]["scale_by"] = 8.0  # 80x80 = 6400 each, 25 600 in all
    with pytest.raises(NodeFailed) as failed:
        await executor.execute(prompt)
    assert failed.value.node_id == "2" and failed.value.input_name == "scale_by"
    assert "4 x 80x80 = 25600 pixels" in str(failed.value)


def test_repeating_a_latent_batch_counts_the_repeated_pixels():
    with use(NodeContext(max_image_pixels=LIMIT)):
        (latent,) = EmptyLatentImage().generate(64, 64, 2)  # 8 192 pixels
        RepeatLatentBatch().repeat(latent, 2)  # 16 384 pixels
        with pytest.raises(InvalidInput) as refused:
            RepeatLatentBatch().repeat(latent, 3)  # 24 576 pixels
    assert refused.value.input_name == "amount" and "6 x 64x64" in str(refused.value)


async def test_execute_refuses_a_too_large_constant_with_every_problem(executor):
    with pytest.raises(InvalidGraph) as refused:
        await executor.execute(empty_image(200, 200, 1))
    assert "200x200 = 40000 pixels exceeds the limit of 20000" in str(refused.value.node_errors)
