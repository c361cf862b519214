"""The pack as a whole: V1 node contract, ComfyUI input names, defaults, devices, a run through the executor."""

import asyncio
from pathlib import Path

import pytest
import torch

import comfy_nodes.image_ops as pack
from visionatrix.nodes import context

NODES = sorted(pack.NODE_CLASS_MAPPINGS.items())

# Input names real ComfyUI workflows send to the core nodes of the same class name.
COMFYUI_INPUTS = {
    "ImageScale": ["image", "upscale_method", "width", "height", "crop"],
    "ImageScaleBy": ["image", "upscale_method", "scale_by"],
    "ImageScaleToTotalPixels": ["image", "upscale_method", "megapixels", "resolution_steps"],
    "ImageCrop": ["image", "width", "height", "x", "y"],
    "ImagePadForOutpaint": ["image", "left", "top", "right", "bottom", "feathering"],
    "ImageInvert": ["image"],
    "ImageBlur": ["image", "blur_radius", "sigma"],
    "ImageSharpen": ["image", "sharpen_radius", "sigma", "alpha"],
    "ImageBlend": ["image1", "image2", "blend_factor", "blend_mode"],
    "ImageCompositeMasked": ["destination", "source", "x", "y", "resize_source", "mask"],
    "ImageFlip": ["image", "flip_method"],
    "ImageRotate": ["image", "rotation"],
    "ImageBatch": ["image1", "image2"],
    "EmptyImage": ["width", "height", "batch_size", "color"],
    "ImageToMask": ["image", "channel"],
    "MaskToImage": ["mask"],
    "InvertMask": ["mask"],
    "GrowMask": ["mask", "expand", "tapered_corners"],
    "ThresholdMask": ["mask", "value"],
    "FeatherMask": ["mask", "left", "top", "right", "bottom"],
}


def all_inputs(node) -> dict:
    spec = node.INPUT_TYPES()
    return {**spec["required"], **spec.get("optional", {})}


def default_arguments(node, device="cpu") -> dict:
    """Every input at its default; IMAGE and MASK inputs get a small random batch of two."""
    arguments = {}
    for name, spec in all_inputs(node).items():
        kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
        if kind == "IMAGE":
            arguments[name] = torch.rand(2, 16, 24, 3, device=device)
        elif kind == "MASK":
            arguments[name] = torch.rand(2, 16, 24, device=device)
        else:
            arguments[name] = options.get("default", kind[0] if isinstance(kind, list) else None)
    return arguments


def test_the_pack_exports_at_least_the_nodes_it_promises():
    promised = set(COMFYUI_INPUTS) | {
        "ImageAdjustBrightness",
        "ImageAdjustContrast",
        "ImageAdjustSaturation",
        "ImageAdjustGamma",
        "ImageAdjustHue",
        "ImageGrayscale",
        "ImageEdgeDetect",
        "ImagePencilSketch",
        "ImagePixelate",
        "ImageDrawText",
        "ToBinaryMask",
        "ImageContactSheet",
    }
    assert promised <= set(pack.NODE_CLASS_MAPPINGS)
    assert set(pack.NODE_DISPLAY_NAME_MAPPINGS) == set(pack.NODE_CLASS_MAPPINGS)


@pytest.mark.parametrize(("name", "node"), NODES)
def test_every_node_declares_the_v1_contract(name, node):
    spec = node.INPUT_TYPES()
    assert set(spec) <= {"required", "optional"} and spec["required"]
    assert isinstance(node.RETURN_TYPES, tuple) and node.RETURN_TYPES
    assert len(node.RETURN_NAMES) == len(node.RETURN_TYPES)
    assert callable(getattr(node, node.FUNCTION))
    assert node.CATEGORY and not node.CATEGORY.startswith("/") and not node.CATEGORY.endswith("/")
    assert node.DESCRIPTION.endswith(".") and node.DESCRIPTION.count(". ") == 0, "one sentence"


@pytest.mark.parametrize(("name", "node"), NODES)
def test_every_default_lies_within_its_bounds_or_options(name, node):
    for input_name, spec in all_inputs(node).items():
        kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
        if isinstance(kind, list):
            assert options.get("default", kind[0]) in kind, input_name
        elif kind in ("INT", "FLOAT"):
            assert options["min"] <= options["default"] <= options["max"], input_name


@pytest.mark.parametrize(("name", "inputs"), sorted(COMFYUI_INPUTS.items()))
def test_nodes_shared_with_comfyui_take_comfyuis_input_names(name, inputs):
    assert list(all_inputs(pack.NODE_CLASS_MAPPINGS[name])) == inputs


@pytest.mark.parametrize(("name", "node"), NODES)
def test_every_node_runs_on_its_defaults_and_returns_its_declared_types(name, node):
    outputs = getattr(node(), node.FUNCTION)(**default_arguments(node))
    assert len(outputs) == len(node.RETURN_TYPES)
    for kind, value in zip(node.RETURN_TYPES, outputs):
        assert value.dtype == torch.float32
        assert value.ndim == (4 if kind == "IMAGE" else 3)
        assert float(value.min()) >= 0.0 and float(value.max()) <= 1.0


@pytest.mark.parametrize(("name", "node"), NODES)
def test_every_node_keeps_its_tensors_on_the_input_device(name, node):
    # Meta tensors carry no data: a copy to the CPU, or mixing in a tensor made on another device, raises.
    with context.use(context.NodeContext(device="meta")):
        outputs = getattr(node(), node.FUNCTION)(**default_arguments(node, device="meta"))
    assert all(value.device.type == "meta" for value in outputs)


class _Total:
    """A test sink that reports the sum and shape of the image it receives."""

    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    def run(self, image):
        return {"ui": {"shape": [list(image.shape)], "total": [float(image.sum())]}}


def test_a_comfyui_style_prompt_of_pack_nodes_runs_in_the_executor():
    from visionatrix.executor.run import Executor, ExecutorSettings
    from visionatrix.nodes.registry import NodeRegistry

    registry = NodeRegistry()
    registry.load_packs([], core_dir=Path("comfy_nodes"))
    registry.register("Total", _Total)
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 24, "height": 16, "batch_size": 2, "color": 0xFF0000}},
        "2": {
            "class_type": "ImageScale",
            "inputs": {"image": ["1", 0], "upscale_method": "bilinear", "width": 12, "height": 0, "crop": "disabled"},
        },
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["2", 0]}},
        "4": {"class_type": "Total", "inputs": {"image": ["3", 0]}},
    }
    executor = Executor(registry, ExecutorSettings(device="cpu"))
    try:
        result = asyncio.run(executor.execute(prompt))
    finally:
        executor.close()
    assert result.ui["4"] == {"shape": [[2, 8, 12, 3]], "total": [2 * 8 * 12 * 2.0]}
