"""ImageResize+ (cubiq's essentials): output sizes per method, condition and multiple_of, worked out by hand from
the original's rules, and pixels checked against torch's interpolation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from comfy_nodes.community import NODE_CLASS_MAPPINGS, ImageResizePlus
from comfy_nodes.image_ops import sampling
from visionatrix.errors import InvalidInput


def image(width, height, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((1, height, width, 3), dtype=np.float32))


def resize(picture, width, height, method, condition="always", multiple_of=0, interpolation="bilinear"):
    out, out_w, out_h = ImageResizePlus().execute(picture, width, height, method=method,
                                                  interpolation=interpolation, condition=condition,
                                                  multiple_of=multiple_of)
    assert (out.shape[2], out.shape[1]) == (out_w, out_h)
    return out


def test_matches_the_original_interface():
    assert NODE_CLASS_MAPPINGS["ImageResize+"] is ImageResizePlus
    required = ImageResizePlus.INPUT_TYPES()["required"]
    assert list(required) == ["image", "width", "height", "interpolation", "method", "condition", "multiple_of"]
    assert required["interpolation"] == (["nearest", "bilinear", "bicubic", "area", "nearest-exact", "lanczos"],)
    assert required["method"] == (["stretch", "keep proportion", "fill / crop", "pad"],)
    assert required["condition"] == (
        ["always", "downscale if bigger", "upscale if smaller", "if bigger area", "if smaller area"],)
    assert required["multiple_of"][1] == {"default": 0, "min": 0, "max": 512, "step": 1}
    assert required["width"][1]["default"] == 512
    assert ImageResizePlus.RETURN_TYPES == ("IMAGE", "INT", "INT")
    assert ImageResizePlus.RETURN_NAMES == ("IMAGE", "width", "height")


@pytest.mark.parametrize(("size", "request_", "method", "expected"), [
    ((600, 400), (960, 960), "keep proportion", (960, 640)),   # ratio min(1.6, 2.4)
    ((700, 300), (960, 960), "keep proportion", (960, 411)),   # round(300 * 960 / 700) = 411
    ((700, 300), (0, 150), "keep proportion", (350, 150)),     # width 0: unbounded (the image is wider)
    ((700, 300), (350, 0), "keep proportion", (350, 150)),
    ((700, 300), (200, 100), "stretch", (200, 100)),
    ((700, 300), (0, 100), "stretch", (700, 100)),
    ((700, 300), (200, 200), "fill / crop", (200, 200)),       # scaled to 467 x 200, centre cut
    ((700, 300), (200, 200), "pad", (200, 200)),                # 200 x 86 padded 57 above, 57 below
])
def test_methods_give_the_original_sizes(size, request_, method, expected):
    out = resize(image(*size), *request_, method)
    assert (out.shape[2], out.shape[1]) == expected


def test_pad_centres_the_image_on_black_and_fill_crop_cuts_the_centre():
    picture = image(70, 30)
    padded = resize(picture, 20, 20, "pad")
    inner = F.interpolate(picture.movedim(-1, 1), size=(9, 20), mode="bilinear").movedim(1, -1)
    assert torch.equal(padded[:, 5:14], inner.clamp(0, 1))  # round(30 * 20 / 70) = 9 rows; (20 - 9) // 2 = 5
    assert float(padded[:, :5].abs().max()) == 0.0 and float(padded[:, 14:].abs().max()) == 0.0
    filled = resize(picture, 20, 20, "fill / crop")
    scaled = F.interpolate(picture.movedim(-1, 1), size=(20, 47), mode="bilinear").movedim(1, -1)
    assert torch.equal(filled, scaled[:, :, 13:33].clamp(0, 1))  # round(70 * 20 / 30) = 47; (47 - 20) // 2 = 13


@pytest.mark.parametrize(("condition", "request_", "resized"), [
    ("downscale if bigger", (50, 50), True),
    ("downscale if bigger", (200, 200), False),
    ("upscale if smaller", (200, 200), True),
    ("upscale if smaller", (50, 50), False),
    ("if bigger area", (10, 10), True),
    ("if smaller area", (10, 10), False),
    ("if smaller area", (200, 90), True),
])
def test_conditions_compare_the_image_with_the_computed_size(condition, request_, resized):
    picture = image(100, 60)
    out = resize(picture, *request_, "stretch", condition=condition)
    assert (out.shape[2], out.shape[1]) == (request_ if resized else (100, 60))
    if not resized:
        assert torch.equal(out, picture)


def test_multiple_of_rounds_the_request_down_then_cuts_the_result_centred():
    picture = image(700, 300)
    out = resize(picture, 1000, 1000, "keep proportion", multiple_of=64)
    # request 960 x 960 -> 960 x 411; 411 % 64 = 27 -> cut 13 rows above, 14 below -> 384
    assert (out.shape[2], out.shape[1]) == (960, 384)
    full = F.interpolate(picture.movedim(-1, 1), size=(411, 960), mode="bilinear").movedim(1, -1).clamp(0, 1)
    assert torch.equal(out, full[:, 13:397])
    kept = resize(image(100, 70), 50, 50, "stretch", condition="upscale if smaller", multiple_of=32)
    assert (kept.shape[2], kept.shape[1]) == (96, 64)  # not resized, still cut to multiples


def test_flow_extend_settings_give_multiples_of_64():
    """flux1_extend.json: width/height 1024 - 64, lanczos, keep proportion, multiple_of 64."""
    picture = image(500, 300)
    out = resize(picture, 960, 960, "keep proportion", multiple_of=64, interpolation="lanczos")
    assert (out.shape[2], out.shape[1]) == (960, 576)
    torch.testing.assert_close(out, sampling.resample(picture, 960, 576, "lanczos"))


@pytest.mark.parametrize("interpolation", ["nearest", "bicubic", "area", "nearest-exact"])
def test_interpolations_are_torch_modes_without_antialiasing(interpolation):
    picture = image(30, 20)
    out = resize(picture, 13, 9, "stretch", interpolation=interpolation)
    expected = F.interpolate(picture.movedim(-1, 1), size=(9, 13), mode=interpolation).movedim(1, -1)
    torch.testing.assert_close(out, expected.clamp(0, 1))


def test_bad_inputs_are_refused_by_name():
    with pytest.raises(InvalidInput) as caught:
        resize(image(10, 10), 5, 5, "squash")
    assert caught.value.input_name == "method"
    with pytest.raises(InvalidInput) as caught:
        resize(image(10, 10), 5, 5, "stretch", multiple_of=64)
    assert caught.value.input_name == "multiple_of"
    with pytest.raises(InvalidInput) as caught:
        resize(image(10, 10), -5, 5, "stretch")
    assert caught.value.input_name == "width"
