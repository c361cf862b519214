"""ImageScale, ImageScaleBy, ImageScaleToTotalPixels and the resampler they share, checked against PIL."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from comfy_nodes.image_ops import resize, sampling
from visionatrix.errors import Interrupted, InvalidInput
from visionatrix.nodes import context

PIL_FILTERS = {
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "area": Image.Resampling.BOX,
}


def random_image(height=16, width=24, channels=3, batch=1, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.random((batch, height, width, channels), dtype=np.float32))


def pil_resize(image: torch.Tensor, width: int, height: int, method: str) -> np.ndarray:
    """Resize the first image of a batch channel by channel as 32-bit float PIL images."""
    array = image[0].numpy()
    planes = [
        np.asarray(Image.fromarray(np.ascontiguousarray(array[..., c])).resize((width, height), PIL_FILTERS[method]))
        for c in range(array.shape[-1])
    ]
    return np.stack(planes, axis=-1)


# PIL and torch break exact ties of nearest sampling differently, so nearest-exact is only checked at sizes
# where no output pixel centre falls exactly on a source pixel edge.
SIZE_CASES = [
    (method, width, height)
    for method in ("bilinear", "bicubic", "lanczos", "nearest-exact")
    for width, height in ((48, 32), (13, 7), (12, 8))
    if not (method == "nearest-exact" and (width, height) == (13, 7))
]


@pytest.mark.parametrize(("method", "width", "height"), SIZE_CASES)
def test_image_scale_matches_pil_filters(method, width, height):
    image = random_image()
    (out,) = resize.ImageScale().upscale(image, method, width, height, "disabled")
    expected = np.clip(pil_resize(image, width, height, method), 0.0, 1.0)
    assert out.shape == (1, height, width, 3)
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-5)


def test_image_scale_area_matches_pil_box_for_whole_factors():
    image = random_image()
    (out,) = resize.ImageScale().upscale(image, "area", 6, 4, "disabled")
    np.testing.assert_allclose(out[0].numpy(), pil_resize(image, 6, 4, "area"), atol=1e-5)


def test_image_scale_returns_float32_in_unit_range_when_lanczos_overshoots():
    board = torch.zeros(1, 16, 24, 3)
    board[:, ::2, ::2] = 1.0
    board[:, 1::2, 1::2] = 1.0
    unclamped = pil_resize(board, 53, 37, "lanczos")
    assert unclamped.max() > 1.0 and unclamped.min() < 0.0
    (out,) = resize.ImageScale().upscale(board, "lanczos", 53, 37, "disabled")
    assert out.dtype == torch.float32
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_image_scale_keeps_aspect_when_height_is_zero():
    (out,) = resize.ImageScale().upscale(random_image(16, 24), "bilinear", 48, 0, "disabled")
    assert out.shape == (1, 32, 48, 3)


def test_image_scale_keeps_aspect_when_width_is_zero():
    (out,) = resize.ImageScale().upscale(random_image(16, 24), "bilinear", 0, 8, "disabled")
    assert out.shape == (1, 8, 12, 3)


def test_image_scale_keeps_size_when_both_sides_are_zero():
    image = random_image()
    (out,) = resize.ImageScale().upscale(image, "bicubic", 0, 0, "disabled")
    assert torch.equal(out, image)


def test_image_scale_center_crop_cuts_equal_margins_off_the_long_side():
    image = random_image(16, 24)
    (out,) = resize.ImageScale().upscale(image, "nearest-exact", 16, 16, "center")
    assert torch.equal(out, image[:, :, 4:20])


def test_image_scale_without_crop_squeezes_the_whole_image():
    image = random_image(16, 24)
    (out,) = resize.ImageScale().upscale(image, "bilinear", 16, 16, "disabled")
    np.testing.assert_allclose(out[0].numpy(), pil_resize(image, 16, 16, "bilinear"), atol=1e-5)


def test_image_scale_resizes_every_image_of_a_batch_and_keeps_four_channels():
    images = random_image(channels=4, batch=3)
    (out,) = resize.ImageScale().upscale(images, "bilinear", 12, 8, "disabled")
    assert out.shape == (3, 8, 12, 4)
    np.testing.assert_allclose(out[2].numpy(), pil_resize(images[2:], 12, 8, "bilinear"), atol=1e-5)


def test_image_scale_refuses_output_above_the_pixel_limit():
    with context.use(context.NodeContext(max_image_pixels=1000)), pytest.raises(InvalidInput) as error:
        resize.ImageScale().upscale(random_image(), "bilinear", 50, 50, "disabled")
    assert error.value.input_name == "width"


def test_image_scale_refuses_a_tensor_that_is_not_an_image():
    with pytest.raises(InvalidInput) as error:
        resize.ImageScale().upscale(torch.rand(16, 24), "bilinear", 8, 8, "disabled")
    assert error.value.input_name == "image"


def test_image_scale_refuses_an_unknown_upscale_method():
    with pytest.raises(InvalidInput) as error:
        resize.ImageScale().upscale(random_image(), "hamming", 8, 8, "disabled")
    assert error.value.input_name == "upscale_method"


def test_image_scale_by_rounds_each_side_and_matches_pil():
    image = random_image(16, 24)
    (out,) = resize.ImageScaleBy().upscale(image, "bicubic", 1.3)
    assert out.shape == (1, 21, 31, 3)
    expected = np.clip(pil_resize(image, 31, 21, "bicubic"), 0.0, 1.0)
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-5)


def test_image_scale_to_total_pixels_reaches_the_budget_and_keeps_the_aspect():
    (out,) = resize.ImageScaleToTotalPixels().upscale(random_image(16, 24), "bilinear", 0.01)
    height, width = out.shape[1:3]
    assert (height, width) == (84, 125)
    assert abs(width * height - 0.01 * 1024 * 1024) / (0.01 * 1024 * 1024) < 0.01
    assert math.isclose(width / height, 24 / 16, rel_tol=0.02)


def test_image_scale_to_total_pixels_snaps_sides_to_resolution_steps():
    (out,) = resize.ImageScaleToTotalPixels().upscale(random_image(16, 24), "bilinear", 0.01, resolution_steps=16)
    assert out.shape[1:3] == (80, 128)


def test_resample_reports_progress_for_large_batches_and_stops_on_interrupt():
    reports = []
    ctx = context.NodeContext(on_progress=lambda value, total, preview=None: reports.append((value, total)))
    images = random_image(4, 4, batch=sampling.CHUNK_IMAGES * 2 + 1)
    with context.use(ctx):
        sampling.resample(images, 2, 2, "bilinear")
    assert reports == [(0, 33), (16, 33), (32, 33)]
    ctx.interrupt_event.set()
    with context.use(ctx), pytest.raises(Interrupted):
        sampling.resample(images, 2, 2, "bilinear")


def test_resample_mask_resizes_a_mask_batch():
    mask = torch.rand(2, 16, 24)
    out = sampling.resample_mask(mask, 12, 8)
    assert out.shape == (2, 8, 12)
    reference = np.asarray(Image.fromarray(mask[1].numpy()).resize((12, 8), Image.Resampling.BILINEAR))
    np.testing.assert_allclose(out[1].numpy(), reference, atol=1e-5)
