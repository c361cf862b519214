"""Blur, sharpen, Sobel edges, pencil sketch and pixelate against numpy references and PIL's GaussianBlur."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from comfy_nodes.image_ops import filters
from visionatrix.errors import InvalidInput


def byte_image(height=16, width=24, channels=3, batch=1, seed=3):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 256, (batch, height, width, channels)).astype(np.float32) / 255
    return torch.from_numpy(values)


def numpy_blur(array: np.ndarray, radius: int, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of ``[H, W, C]`` with mirrored borders, written with numpy loops."""
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-(offsets**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    padded = np.pad(array, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    height, width = array.shape[:2]
    rows = sum(kernel[k] * padded[k : k + height] for k in range(len(kernel)))
    return sum(kernel[k] * rows[:, k : k + width] for k in range(len(kernel)))


def numpy_luma(array: np.ndarray) -> np.ndarray:
    return array[..., 0] * 0.299 + array[..., 1] * 0.587 + array[..., 2] * 0.114


def test_image_blur_matches_a_numpy_gaussian():
    image = byte_image()
    (out,) = filters.ImageBlur().blur(image, 3, 1.2)
    assert out.shape == image.shape and out.dtype == torch.float32
    np.testing.assert_allclose(out[0].numpy(), numpy_blur(image[0].numpy(), 3, 1.2), atol=1e-5)


def test_image_blur_agrees_with_pil_gaussian_blur_away_from_the_border():
    image = byte_image()
    (out,) = filters.ImageBlur().blur(image, 6, 1.5)
    pil = Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.5))
    expected = np.asarray(pil).astype(np.float32) / 255
    np.testing.assert_allclose(out[0, 6:-6, 6:-6].numpy(), expected[6:-6, 6:-6], atol=0.015)
    assert float(out.std()) < 0.5 * float(image.std())


def test_image_blur_works_when_the_radius_exceeds_the_image():
    image = byte_image(4, 5, batch=2)
    (out,) = filters.ImageBlur().blur(image, 31, 10.0)
    assert out.shape == image.shape
    assert float(out.max() - out.min()) < float(image.max() - image.min())


def test_image_sharpen_adds_ten_alpha_times_the_detail():
    image = byte_image()
    (out,) = filters.ImageSharpen().sharpen(image, 2, 1.0, 0.3)
    array = image[0].numpy()
    expected = np.clip(array + 10 * 0.3 * (array - numpy_blur(array, 2, 1.0)), 0, 1)
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-5)


def test_image_sharpen_with_zero_alpha_keeps_the_image_and_its_alpha():
    image = byte_image(channels=4)
    (out,) = filters.ImageSharpen().sharpen(image, 3, 1.0, 0.0)
    torch.testing.assert_close(out, image)


def numpy_sobel(gray: np.ndarray) -> np.ndarray:
    padded = np.pad(gray, 1, mode="edge")
    height, width = gray.shape

    def at(dy, dx):
        return padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]

    gx = (at(-1, 1) + 2 * at(0, 1) + at(1, 1)) - (at(-1, -1) + 2 * at(0, -1) + at(1, -1))
    gy = (at(1, -1) + 2 * at(1, 0) + at(1, 1)) - (at(-1, -1) + 2 * at(-1, 0) + at(-1, 1))
    return np.hypot(gx, gy)


def test_image_edge_detect_matches_a_numpy_sobel():
    image = byte_image()
    (out,) = filters.ImageEdgeDetect().detect(image, 1.5)
    expected = np.clip(numpy_sobel(numpy_luma(image[0].numpy())) * 1.5 / 4, 0, 1)
    for channel in range(3):
        np.testing.assert_allclose(out[0, ..., channel].numpy(), expected, atol=1e-5)


def test_image_edge_detect_marks_a_step_white_and_flat_areas_black():
    image = torch.zeros(1, 8, 8, 3)
    image[:, :, 4:] = 1.0
    (out,) = filters.ImageEdgeDetect().detect(image, 1.0)
    assert torch.all(out[0, :, 3:5] == 1.0)
    assert torch.all(out[0, :, :3] == 0.0) and torch.all(out[0, :, 5:] == 0.0)


def test_image_pencil_sketch_dodges_the_grey_with_its_blurred_negative():
    image = byte_image()
    (out,) = filters.ImagePencilSketch().sketch(image, 4, 2.0)
    gray = numpy_luma(image[0].numpy())[..., None]
    blurred = numpy_blur(1 - gray, 4, 2.0)
    expected = np.clip(gray / np.maximum(1 - blurred, 1e-12), 0, 1)[..., 0]
    assert out.shape == (1, 16, 24, 3)
    np.testing.assert_allclose(out[0, ..., 1].numpy(), expected, atol=1e-4)


def test_image_pencil_sketch_turns_a_flat_image_white():
    (out,) = filters.ImagePencilSketch().sketch(torch.full((1, 8, 8, 3), 0.4), 3, 1.0)
    torch.testing.assert_close(out, torch.ones(1, 8, 8, 3))


def numpy_pixelate(array: np.ndarray, block: int) -> np.ndarray:
    out = np.empty_like(array)
    for top in range(0, array.shape[0], block):
        for left in range(0, array.shape[1], block):
            cell = array[top : top + block, left : left + block]
            out[top : top + block, left : left + block] = cell.mean(axis=(0, 1))
    return out


@pytest.mark.parametrize("block_size", [1, 4, 5, 30])
def test_image_pixelate_fills_each_block_with_its_mean(block_size):
    image = byte_image()
    (out,) = filters.ImagePixelate().pixelate(image, block_size)
    np.testing.assert_allclose(out[0].numpy(), numpy_pixelate(image[0].numpy(), block_size), atol=1e-6)


def test_image_pixelate_with_a_mask_changes_only_the_masked_region():
    image = byte_image(batch=2)
    mask = torch.zeros(1, 16, 24)
    mask[:, :8, :12] = 1.0
    (out,) = filters.ImagePixelate().pixelate(image, 4, mask=mask)
    assert out.shape == image.shape
    assert torch.equal(out[:, 8:], image[:, 8:]) and torch.equal(out[:, :, 12:], image[:, :, 12:])
    expected = numpy_pixelate(image[1].numpy(), 4)[:8, :12]
    np.testing.assert_allclose(out[1, :8, :12].numpy(), expected, atol=1e-6)


def test_image_pixelate_resizes_a_mask_of_another_size():
    image = byte_image()
    mask = torch.ones(1, 8, 12)
    (out,) = filters.ImagePixelate().pixelate(image, 4, mask=mask)
    np.testing.assert_allclose(out[0].numpy(), numpy_pixelate(image[0].numpy(), 4), atol=1e-6)


def test_image_pixelate_refuses_a_mask_batch_that_cannot_broadcast():
    with pytest.raises(InvalidInput) as error:
        filters.ImagePixelate().pixelate(byte_image(batch=2), 4, mask=torch.ones(3, 16, 24))
    assert error.value.input_name == "mask"
