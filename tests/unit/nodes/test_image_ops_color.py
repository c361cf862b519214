"""Colour nodes against PIL (ImageOps, ImageEnhance, convert) and the standard library's colorsys."""

import colorsys

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from comfy_nodes.image_ops import color
from visionatrix.errors import InvalidInput

BYTE = 1.0 / 255


def byte_image(height=16, width=24, channels=3, batch=1, seed=2):
    """A random image whose values are multiples of 1/255, so it converts to 8-bit PIL without loss."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 256, (batch, height, width, channels)).astype(np.float32) / 255
    return torch.from_numpy(values)


def to_pil(image: torch.Tensor) -> Image.Image:
    return Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8))


def from_pil(pil: Image.Image) -> np.ndarray:
    return np.asarray(pil).astype(np.float32) / 255


def test_image_invert_matches_pil():
    image = byte_image()
    (out,) = color.ImageInvert().adjust(image)
    np.testing.assert_allclose(out[0].numpy(), from_pil(ImageOps.invert(to_pil(image))), atol=1e-6)


def test_image_invert_keeps_the_alpha_channel():
    image = byte_image(channels=4)
    (out,) = color.ImageInvert().adjust(image)
    assert torch.equal(out[..., 3], image[..., 3])
    torch.testing.assert_close(out[..., :3], 1 - image[..., :3])


def test_image_grayscale_matches_pil_luma_in_three_channels():
    image = byte_image()
    (out,) = color.ImageGrayscale().adjust(image)
    expected = from_pil(to_pil(image).convert("L"))
    assert out.shape == (1, 16, 24, 3)
    for channel in range(3):
        np.testing.assert_allclose(out[0, ..., channel].numpy(), expected, atol=BYTE)


@pytest.mark.parametrize(
    ("node", "enhancer", "factor"),
    [
        (color.ImageAdjustBrightness, ImageEnhance.Brightness, 0.4),
        (color.ImageAdjustBrightness, ImageEnhance.Brightness, 1.7),
        (color.ImageAdjustContrast, ImageEnhance.Contrast, 0.3),
        (color.ImageAdjustContrast, ImageEnhance.Contrast, 1.8),
        (color.ImageAdjustSaturation, ImageEnhance.Color, 0.0),
        (color.ImageAdjustSaturation, ImageEnhance.Color, 2.5),
    ],
)
def test_factor_adjustments_match_pil_image_enhance(node, enhancer, factor):
    image = byte_image()
    name = next(iter(set(node.INPUT_TYPES()["required"]) - {"image"}))
    (out,) = node().adjust(image, **{name: factor})
    expected = from_pil(enhancer(to_pil(image)).enhance(factor))
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out[0].numpy(), expected, atol=2 * BYTE)


@pytest.mark.parametrize(
    ("node", "name"),
    [
        (color.ImageAdjustBrightness, "brightness"),
        (color.ImageAdjustContrast, "contrast"),
        (color.ImageAdjustSaturation, "saturation"),
        (color.ImageAdjustGamma, "gamma"),
    ],
)
def test_factor_one_leaves_the_image_unchanged(node, name):
    image = byte_image(channels=4)
    (out,) = node().adjust(image, **{name: 1.0})
    torch.testing.assert_close(out, image)


def test_image_adjust_contrast_uses_each_images_own_mean():
    dark = torch.full((1, 4, 4, 3), 0.2)
    light = torch.full((1, 4, 4, 3), 0.8)
    (out,) = color.ImageAdjustContrast().adjust(torch.cat([dark, light]), contrast=0.0)
    torch.testing.assert_close(out, torch.cat([dark, light]))


def test_image_adjust_gamma_raises_values_to_one_over_gamma():
    image = byte_image()
    (out,) = color.ImageAdjustGamma().adjust(image, gamma=2.2)
    np.testing.assert_allclose(out.numpy(), image.numpy() ** (1 / 2.2), rtol=1e-5, atol=1e-6)
    assert float(out.mean()) > float(image.mean())


def test_rgb_to_hsv_matches_colorsys():
    pixels = byte_image(4, 5)[0].reshape(-1, 3)
    hsv = color.rgb_to_hsv(pixels)
    expected = np.array([colorsys.rgb_to_hsv(*p) for p in pixels.tolist()], dtype=np.float32)
    np.testing.assert_allclose(hsv.numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("degrees", [30.0, -90.0, 180.0])
def test_image_adjust_hue_rotates_hue_like_colorsys(degrees):
    image = byte_image(4, 6)
    (out,) = color.ImageAdjustHue().adjust(image, hue_shift=degrees)
    expected = []
    for red, green, blue in image[0].reshape(-1, 3).tolist():
        hue, sat, val = colorsys.rgb_to_hsv(red, green, blue)
        expected.append(colorsys.hsv_to_rgb((hue + degrees / 360) % 1.0, sat, val))
    np.testing.assert_allclose(out[0].reshape(-1, 3).numpy(), np.array(expected), atol=1e-5)


def test_image_adjust_hue_turns_pure_red_into_green_at_120_degrees():
    red = torch.tensor([1.0, 0.0, 0.0]).expand(1, 2, 2, 3)
    (out,) = color.ImageAdjustHue().adjust(red, hue_shift=120.0)
    torch.testing.assert_close(out, torch.tensor([0.0, 1.0, 0.0]).expand(1, 2, 2, 3))


def test_single_channel_images_are_treated_as_grey_rgb():
    grey = byte_image(channels=1)
    (out,) = color.ImageInvert().adjust(grey)
    assert out.shape == (1, 16, 24, 3)
    torch.testing.assert_close(out, (1 - grey).expand(-1, -1, -1, 3))


def test_color_nodes_refuse_a_mask_given_as_image():
    with pytest.raises(InvalidInput) as error:
        color.ImageAdjustBrightness().adjust(torch.rand(1, 16, 24), brightness=1.0)
    assert error.value.input_name == "image"
