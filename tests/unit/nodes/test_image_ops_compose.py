"""ImageBlend and ImageCompositeMasked against numpy formulas, PIL's ImageChops and Image.paste."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageChops

from comfy_nodes.image_ops import compose, resize
from visionatrix.errors import InvalidInput

BYTE = 1.0 / 255


def byte_image(height=16, width=24, channels=3, batch=1, seed=4):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 256, (batch, height, width, channels)).astype(np.float32) / 255
    return torch.from_numpy(values)


def to_pil(image: torch.Tensor, index=0) -> Image.Image:
    return Image.fromarray((image[index].numpy() * 255).round().astype(np.uint8))


def from_pil(pil: Image.Image) -> np.ndarray:
    return np.asarray(pil).astype(np.float32) / 255


def numpy_mode(mode: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if mode == "normal":
        return b
    if mode == "multiply":
        return a * b
    if mode == "screen":
        return 1 - (1 - a) * (1 - b)
    if mode == "overlay":
        return np.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b))
    if mode == "soft_light":
        d = np.where(a <= 0.25, ((16 * a - 12) * a + 4) * a, np.sqrt(a))
        return np.where(b <= 0.5, a - (1 - 2 * b) * a * (1 - a), a + (2 * b - 1) * (d - a))
    return np.abs(a - b)


@pytest.mark.parametrize("mode", list(compose.BLEND_MODES))
@pytest.mark.parametrize("factor", [0.0, 0.35, 1.0])
def test_image_blend_matches_the_numpy_formula_of_each_mode(mode, factor):
    image1, image2 = byte_image(seed=5), byte_image(seed=6)
    (out,) = compose.ImageBlend().blend_images(image1, image2, factor, mode)
    a, b = image1[0].numpy(), image2[0].numpy()
    expected = np.clip(a * (1 - factor) + numpy_mode(mode, a, b) * factor, 0, 1)
    assert out.shape == image1.shape and out.dtype == torch.float32
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-6)


@pytest.mark.parametrize(
    ("mode", "chop"),
    [("multiply", ImageChops.multiply), ("screen", ImageChops.screen), ("difference", ImageChops.difference)],
)
def test_image_blend_at_full_factor_matches_pil_image_chops(mode, chop):
    image1, image2 = byte_image(seed=7), byte_image(seed=8)
    (out,) = compose.ImageBlend().blend_images(image1, image2, 1.0, mode)
    expected = from_pil(chop(to_pil(image1), to_pil(image2)))
    np.testing.assert_allclose(out[0].numpy(), expected, atol=BYTE)


def test_image_blend_resizes_image2_to_image1():
    image1, image2 = byte_image(), byte_image(8, 12, seed=9)
    (out,) = compose.ImageBlend().blend_images(image1, image2, 1.0, "normal")
    (expected,) = resize.ImageScale().upscale(image2, "bicubic", 24, 16, "center")
    torch.testing.assert_close(out, expected)


def test_image_blend_broadcasts_a_single_image2_over_the_batch_and_keeps_alpha():
    image1, image2 = byte_image(channels=4, batch=3), byte_image(seed=10)
    (out,) = compose.ImageBlend().blend_images(image1, image2, 0.5, "multiply")
    assert out.shape == (3, 16, 24, 4)
    assert torch.equal(out[..., 3], image1[..., 3])
    expected = image1[2, ..., :3] * 0.5 + image1[2, ..., :3] * image2[0] * 0.5
    torch.testing.assert_close(out[2, ..., :3], expected)


def test_image_blend_refuses_batches_that_cannot_broadcast():
    with pytest.raises(InvalidInput) as error:
        compose.ImageBlend().blend_images(byte_image(batch=2), byte_image(batch=3), 0.5, "normal")
    assert error.value.input_name == "image2"


@pytest.mark.parametrize(("x", "y"), [(5, 3), (-4, -2), (20, 12)])
def test_image_composite_masked_without_mask_pastes_like_pil(x, y):
    destination, source = byte_image(seed=11), byte_image(7, 9, seed=12)
    (out,) = compose.ImageCompositeMasked().composite(destination, source, x, y, False)
    expected = to_pil(destination)
    expected.paste(to_pil(source), (x, y))
    np.testing.assert_allclose(out[0].numpy(), from_pil(expected), atol=1e-6)


def test_image_composite_masked_mixes_through_the_mask():
    destination, source = byte_image(seed=13), byte_image(6, 8, seed=14)
    mask = torch.rand(1, 6, 8, generator=torch.Generator().manual_seed(0))
    (out,) = compose.ImageCompositeMasked().composite(destination, source, 10, 4, False, mask=mask)
    expected = destination[0].numpy().copy()
    m = mask[0].numpy()[..., None]
    expected[4:10, 10:18] = expected[4:10, 10:18] * (1 - m) + source[0].numpy() * m
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-6)
    assert torch.equal(destination, byte_image(seed=13)), "the input is not modified in place"


def test_image_composite_masked_resizes_the_source_to_the_destination():
    destination, source = byte_image(seed=15), byte_image(8, 12, seed=16)
    (out,) = compose.ImageCompositeMasked().composite(destination, source, 0, 0, True)
    (expected,) = resize.ImageScale().upscale(source, "bilinear", 24, 16, "disabled")
    torch.testing.assert_close(out, expected)


def test_image_composite_masked_off_the_canvas_returns_the_destination():
    destination = byte_image(batch=2)
    (out,) = compose.ImageCompositeMasked().composite(destination, byte_image(4, 4), 30, 0, False)
    assert torch.equal(out, destination)


def test_image_composite_masked_broadcasts_one_source_over_a_destination_batch():
    destination, source = byte_image(batch=3, seed=17), byte_image(4, 4, seed=18)
    (out,) = compose.ImageCompositeMasked().composite(destination, source, 2, 2, False)
    assert out.shape == (3, 16, 24, 3)
    assert torch.equal(out[:, 2:6, 2:6], source.expand(3, -1, -1, -1))


def test_image_composite_masked_refuses_a_mask_batch_that_cannot_broadcast():
    with pytest.raises(InvalidInput) as error:
        compose.ImageCompositeMasked().composite(
            byte_image(batch=2), byte_image(4, 4), 0, 0, False, mask=torch.ones(3, 4, 4)
        )
    assert error.value.input_name == "mask"
