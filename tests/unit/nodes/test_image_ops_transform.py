"""ImageCrop, ImagePadForOutpaint, ImageFlip and ImageRotate against numpy slicing and PIL transposes."""

import numpy as np
import pytest
import torch
from PIL import Image

from comfy_nodes.image_ops import transform
from visionatrix.errors import InvalidInput
from visionatrix.nodes import context


def random_image(height=16, width=24, channels=3, batch=1, seed=1):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.random((batch, height, width, channels), dtype=np.float32))


def as_uint8(image: torch.Tensor) -> torch.Tensor:
    """An image whose values are exact multiples of 1/255, so PIL round trips are lossless."""
    return torch.round(image * 255) / 255


def pil_transpose(image: torch.Tensor, method: Image.Transpose) -> np.ndarray:
    pil = Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8))
    return np.asarray(pil.transpose(method)).astype(np.float32) / 255


def test_image_crop_takes_the_rectangle_at_x_y():
    image = random_image(batch=2)
    (out,) = transform.ImageCrop().crop(image, 10, 6, 5, 3)
    assert out.shape == (2, 6, 10, 3)
    assert torch.equal(out, image[:, 3:9, 5:15])


def test_image_crop_clips_a_rectangle_that_runs_past_the_edge():
    image = random_image()
    (out,) = transform.ImageCrop().crop(image, 100, 100, 20, 10)
    assert torch.equal(out, image[:, 10:, 20:])


@pytest.mark.parametrize(("x", "y", "input_name"), [(24, 0, "x"), (0, 16, "y"), (99, 99, "x")])
def test_image_crop_refuses_a_crop_that_starts_outside_the_image(x, y, input_name):
    with pytest.raises(InvalidInput) as error:
        transform.ImageCrop().crop(random_image(), 4, 4, x, y)
    assert error.value.input_name == input_name


def test_image_pad_for_outpaint_places_the_image_inside_grey_borders():
    image = random_image(batch=2)
    (out, mask) = transform.ImagePadForOutpaint().expand_image(image, 3, 2, 5, 4, 0)
    assert out.shape == (2, 22, 32, 3) and mask.shape == (2, 22, 32)
    assert out.dtype == torch.float32 and mask.dtype == torch.float32
    assert torch.equal(out[:, 2:18, 3:27], image)
    border = torch.ones(22, 32, dtype=torch.bool)
    border[2:18, 3:27] = False
    assert torch.all(out[:, border] == 0.5)
    assert torch.all(mask[:, border] == 1.0) and torch.all(mask[:, ~border] == 0.0)


def reference_feather(height, width, pads, feathering):
    """Mask of the original area, computed pixel by pixel."""
    left, top, right, bottom = pads
    inner = np.zeros((height, width), dtype=np.float32)
    for i in range(height):
        for j in range(width):
            sides = [i if top else None, height - 1 - i if bottom else None]
            sides += [j if left else None, width - 1 - j if right else None]
            distances = [d for d in sides if d is not None]
            if distances and min(distances) < feathering:
                inner[i, j] = ((feathering - min(distances)) / feathering) ** 2
    return inner


@pytest.mark.parametrize("pads", [(4, 0, 0, 0), (0, 2, 0, 6), (3, 3, 3, 3)])
def test_image_pad_for_outpaint_feathers_only_the_padded_sides(pads):
    left, top = pads[:2]
    (_, mask) = transform.ImagePadForOutpaint().expand_image(random_image(), *pads, 5)
    inner = mask[0, top : top + 16, left : left + 24].numpy()
    np.testing.assert_allclose(inner, reference_feather(16, 24, pads, 5), atol=1e-6)


def test_image_pad_for_outpaint_refuses_a_result_above_the_pixel_limit():

    with context.use(context.NodeContext(max_image_pixels=500)), pytest.raises(InvalidInput):
        transform.ImagePadForOutpaint().expand_image(random_image(), 8, 8, 8, 8, 0)


@pytest.mark.parametrize(
    ("flip_method", "pil_method"),
    [
        ("x-axis: vertically", Image.Transpose.FLIP_TOP_BOTTOM),
        ("y-axis: horizontally", Image.Transpose.FLIP_LEFT_RIGHT),
    ],
)
def test_image_flip_matches_pil(flip_method, pil_method):
    image = as_uint8(random_image())
    (out,) = transform.ImageFlip().flip(image, flip_method)
    np.testing.assert_allclose(out[0].numpy(), pil_transpose(image, pil_method), atol=1e-6)


@pytest.mark.parametrize(
    ("rotation", "pil_method"),
    [
        ("90 degrees", Image.Transpose.ROTATE_270),
        ("180 degrees", Image.Transpose.ROTATE_180),
        ("270 degrees", Image.Transpose.ROTATE_90),
    ],
)
def test_image_rotate_turns_clockwise_like_pil(rotation, pil_method):
    image = as_uint8(random_image())
    (out,) = transform.ImageRotate().rotate(image, rotation)
    expected = pil_transpose(image, pil_method)
    assert out.shape[1:3] == expected.shape[:2]
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-6)
    assert out.is_contiguous()


def test_image_rotate_none_keeps_the_image():
    image = random_image(channels=4)
    (out,) = transform.ImageRotate().rotate(image, "none")
    assert torch.equal(out, image)
