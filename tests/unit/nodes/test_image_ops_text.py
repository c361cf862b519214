"""ImageDrawText against text drawn by PIL directly onto the same picture."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from comfy_nodes.image_ops import text

BYTE = 1.0 / 255


def byte_image(height=40, width=64, channels=3, count=1, seed=40):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 256, (count, height, width, channels)).astype(np.float32) / 255
    return torch.from_numpy(values)


def pil_drawn(image: torch.Tensor, words: str, size: int, ink_xy: tuple[int, int], color: tuple) -> np.ndarray:
    """Draw ``words`` with PIL so that the ink's bounding box starts at ``ink_xy``."""
    pil = Image.fromarray((image[0].numpy() * 255).round().astype(np.uint8))
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(pil)
    left, top, _, _ = draw.multiline_textbbox((0, 0), words, font=font)
    draw.multiline_text((ink_xy[0] - left, ink_xy[1] - top), words, font=font, fill=color)
    return np.asarray(pil).astype(np.float32) / 255


def test_image_draw_text_matches_text_drawn_by_pil():
    image = byte_image()
    (out,) = text.ImageDrawText().draw(image, "Hi\nVix", 14, 5, 3, 0xFFCC00, 1.0, "top-left")
    expected = pil_drawn(image, "Hi\nVix", 14, (5, 3), (0xFF, 0xCC, 0x00))
    assert out.shape == image.shape and out.dtype == torch.float32
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1.5 * BYTE)
    assert not torch.equal(out, image)


def ink_box(before: torch.Tensor, after: torch.Tensor) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero((after != before).any(dim=-1)[0].numpy())
    return rows.min(), cols.min(), rows.max(), cols.max()


@pytest.mark.parametrize(
    ("anchor", "corner"),
    [("top-left", "start"), ("bottom-right", "end"), ("center", "middle")],
)
def test_image_draw_text_puts_the_anchor_point_of_the_ink_at_x_y(anchor, corner):
    image = torch.zeros(1, 40, 64, 3)
    (out,) = text.ImageDrawText().draw(image, "Mark", 12, 32, 20, 0xFFFFFF, 1.0, anchor)
    top, left, bottom, right = ink_box(image, out)
    if corner == "start":
        assert (top, left) == (20, 32)
    elif corner == "end":
        assert (bottom, right) == (19, 31)
    else:
        assert abs((top + bottom) / 2 - 20) <= 1 and abs((left + right) / 2 - 32) <= 1


def test_image_draw_text_opacity_mixes_the_colour_with_the_image():
    image = torch.zeros(2, 40, 64, 3)
    (solid,) = text.ImageDrawText().draw(image, "Mark", 16, 4, 4, 0xFFFFFF, 1.0, "top-left")
    (faint,) = text.ImageDrawText().draw(image, "Mark", 16, 4, 4, 0xFFFFFF, 0.25, "top-left")
    torch.testing.assert_close(faint, solid * 0.25)
    assert torch.equal(solid[0], solid[1])


def test_image_draw_text_makes_the_ink_opaque_on_a_transparent_image():
    image = torch.zeros(1, 40, 64, 4)
    (out,) = text.ImageDrawText().draw(image, "A", 20, 2, 2, 0x00FF00, 1.0, "top-left")
    inked = out[..., 1] > 0
    assert inked.any()
    assert torch.equal(out[..., 3][inked], out[..., 1][inked])
    assert torch.all(out[..., 3][~inked] == 0.0)


@pytest.mark.parametrize(("words", "x", "y"), [("", 5, 5), ("far away", 2000, 5), ("high", 5, 900)])
def test_image_draw_text_with_nothing_visible_returns_the_image(words, x, y):
    image = byte_image()
    (out,) = text.ImageDrawText().draw(image, words, 12, x, y, 0xFFFFFF, 1.0, "top-left")
    assert torch.equal(out, image)


def test_image_draw_text_clips_text_that_runs_past_the_edge():
    image = torch.zeros(1, 40, 64, 3)
    (out,) = text.ImageDrawText().draw(image, "Watermark", 24, 60, 36, 0xFFFFFF, 1.0, "top-left")
    assert out.shape == image.shape
    assert float(out[0, 36:, 60:].max()) > 0
