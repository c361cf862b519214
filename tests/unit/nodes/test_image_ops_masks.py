"""Mask nodes against numpy references: channel pick, invert, grow/shrink, thresholds, feathering."""

import numpy as np
import pytest
import torch

from comfy_nodes.image_ops import masks
from visionatrix.errors import Interrupted, InvalidInput
from visionatrix.nodes import context


def random_mask(height=16, width=24, count=1, seed=30):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.random((count, height, width), dtype=np.float32))


@pytest.mark.parametrize(("channel", "index"), [("red", 0), ("green", 1), ("blue", 2), ("alpha", 3)])
def test_image_to_mask_takes_the_chosen_channel(channel, index):
    image = torch.rand(2, 16, 24, 4)
    (mask,) = masks.ImageToMask().image_to_mask(image, channel)
    assert mask.shape == (2, 16, 24)
    assert torch.equal(mask, image[..., index])


def test_image_to_mask_refuses_alpha_of_an_rgb_image():
    with pytest.raises(InvalidInput) as error:
        masks.ImageToMask().image_to_mask(torch.rand(1, 16, 24, 3), "alpha")
    assert error.value.input_name == "channel"


def test_mask_to_image_repeats_the_mask_in_three_channels():
    mask = random_mask(count=2)
    (image,) = masks.MaskToImage().mask_to_image(mask)
    assert image.shape == (2, 16, 24, 3)
    for channel in range(3):
        assert torch.equal(image[..., channel], mask)


def test_mask_nodes_accept_a_single_two_dimensional_mask():
    (image,) = masks.MaskToImage().mask_to_image(torch.ones(16, 24))
    assert image.shape == (1, 16, 24, 3)


def test_invert_mask_subtracts_from_one():
    mask = random_mask()
    (out,) = masks.InvertMask().invert(mask)
    np.testing.assert_allclose(out.numpy(), 1 - mask.numpy(), atol=1e-7)


def test_invert_mask_refuses_an_image():
    with pytest.raises(InvalidInput) as error:
        masks.InvertMask().invert(torch.rand(1, 16, 24, 3))
    assert error.value.input_name == "mask"


def numpy_dilate(mask: np.ndarray, steps: int, cross: bool) -> np.ndarray:
    """Grey dilation, ``steps`` times, by a 3x3 square or cross; pixels outside count as the nearest edge."""
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if not (cross and dy and dx)]
    height, width = mask.shape
    for _ in range(steps):
        padded = np.pad(mask, 1, mode="edge")
        mask = np.max([padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] for dy, dx in offsets], axis=0)
    return mask


@pytest.mark.parametrize("tapered", [True, False])
@pytest.mark.parametrize("expand", [1, 3, -2])
def test_grow_mask_matches_repeated_numpy_dilation(expand, tapered):
    mask = random_mask(count=2)
    (out,) = masks.GrowMask().expand_mask(mask, expand, tapered)
    for index in range(2):
        if expand > 0:
            expected = numpy_dilate(mask[index].numpy(), expand, tapered)
        else:
            expected = 1 - numpy_dilate(1 - mask[index].numpy(), -expand, tapered)
        np.testing.assert_allclose(out[index].numpy(), expected, atol=1e-6)


def test_grow_mask_tapered_grows_a_point_into_a_diamond():
    point = torch.zeros(1, 9, 9)
    point[0, 4, 4] = 1.0
    (out,) = masks.GrowMask().expand_mask(point, 2, True)
    rows, cols = np.indices((9, 9))
    assert np.array_equal(out[0].numpy() == 1.0, np.abs(rows - 4) + np.abs(cols - 4) <= 2)


def test_grow_mask_with_zero_expand_keeps_the_mask():
    mask = random_mask()
    (out,) = masks.GrowMask().expand_mask(mask, 0, True)
    assert torch.equal(out, mask)


def test_grow_mask_tapered_reports_progress_and_stops_on_interrupt():
    reports = []
    ctx = context.NodeContext(on_progress=lambda value, total, preview=None: reports.append(value))
    with context.use(ctx):
        masks.GrowMask().expand_mask(random_mask(), 3, True)
    assert reports == [0, 1, 2]
    ctx.interrupt_event.set()
    with context.use(ctx), pytest.raises(Interrupted):
        masks.GrowMask().expand_mask(random_mask(), 3, True)


def test_threshold_mask_sets_values_above_the_threshold_to_one():
    mask = random_mask()
    (out,) = masks.ThresholdMask().threshold(mask, 0.4)
    np.testing.assert_array_equal(out.numpy(), (mask.numpy() > 0.4).astype(np.float32))
    assert out.dtype == torch.float32


def test_to_binary_mask_uses_a_threshold_out_of_255():
    mask = torch.tensor([[[19 / 255, 20 / 255, 21 / 255, 1.0]]])
    (out,) = masks.ToBinaryMask().to_binary(mask, 20)
    assert out.tolist() == [[[0.0, 1.0, 1.0, 1.0]]]


def numpy_feather(mask: np.ndarray, left: int, top: int, right: int, bottom: int) -> np.ndarray:
    out = mask.copy()
    height, width = mask.shape
    for x in range(min(left, width)):
        out[:, x] *= (x + 1) / left
    for x in range(min(right, width)):
        out[:, width - 1 - x] *= (x + 1) / right
    for y in range(min(top, height)):
        out[y, :] *= (y + 1) / top
    for y in range(min(bottom, height)):
        out[height - 1 - y, :] *= (y + 1) / bottom
    return out


@pytest.mark.parametrize("sides", [(4, 0, 0, 0), (0, 3, 6, 2), (15, 10, 15, 10)])
def test_feather_mask_fades_linearly_towards_each_edge(sides):
    mask = random_mask()
    (out,) = masks.FeatherMask().feather(mask, *sides)
    np.testing.assert_allclose(out[0].numpy(), numpy_feather(mask[0].numpy(), *sides), atol=1e-6)


def test_feather_mask_with_no_widths_keeps_the_mask():
    mask = random_mask()
    (out,) = masks.FeatherMask().feather(mask, 0, 0, 0, 0)
    assert torch.equal(out, mask)
