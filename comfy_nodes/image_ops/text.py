"""Text overlay: PIL renders the glyphs into a small coverage mask once, torch composites it onto every image.

On an image with alpha the ink is composited "over" it, so text stays visible on transparent areas.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from . import compose, shapes

# anchor name -> (fraction of the text width left of x, fraction of the text height above y)
ANCHORS = {
    "top-left": (0.0, 0.0),
    "top-center": (0.5, 0.0),
    "top-right": (1.0, 0.0),
    "center-left": (0.0, 0.5),
    "center": (0.5, 0.5),
    "center-right": (1.0, 0.5),
    "bottom-left": (0.0, 1.0),
    "bottom-center": (0.5, 1.0),
    "bottom-right": (1.0, 1.0),
}


def render_text(text: str, font_size: int) -> np.ndarray:
    """Coverage ``[h, w]`` (uint8) of ``text`` in PIL's default font, cropped to the ink's bounding box."""
    font = ImageFont.load_default(size=font_size)
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    left, top, right, bottom = probe.multiline_textbbox((0, 0), text, font=font)
    if right <= left or bottom <= top:
        return np.zeros((0, 0), dtype=np.uint8)
    canvas = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(canvas).multiline_text((-left, -top), text, font=font, fill=255)
    return np.asarray(canvas)


def text_origin(x: int, y: int, anchor: str, text_hw: tuple[int, int]) -> tuple[int, int]:
    """Top-left corner of the text box whose ``anchor`` point lands on ``(x, y)``."""
    share_x, share_y = ANCHORS[anchor]
    height, width = text_hw
    return x - round(width * share_x), y - round(height * share_y)


class ImageDrawText:
    DESCRIPTION = "Writes text onto images (a caption or watermark) with its anchor point at x, y."
    CATEGORY = "image/text"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "draw"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        position = {"default": 16, "min": 0, "max": shapes.MAX_RESOLUTION, "step": 1}
        return {
            "required": {
                "image": ("IMAGE",),
                "text": ("STRING", {"default": "Visionatrix", "multiline": True}),
                "font_size": ("INT", {"default": 32, "min": 4, "max": 1024, "step": 1}),
                "x": ("INT", dict(position)),
                "y": ("INT", dict(position)),
                "color": ("INT", {"default": 0xFFFFFF, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"}),
                "opacity": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
                "anchor": (list(ANCHORS), {"default": "top-left"}),
            }
        }

    def draw(self, image, text, font_size, x, y, color, opacity, anchor):
        image = shapes.require_image("image", image)
        coverage = render_text(text, font_size)
        left, top = text_origin(x, y, anchor, coverage.shape)
        region = compose.visible_region(left, top, coverage.shape, image.shape[1:3])
        if region is None or opacity == 0:
            return (image,)
        (dst_rows, dst_cols), (src_rows, src_cols) = region
        glyphs = torch.from_numpy(coverage[src_rows, src_cols].copy()).to(image.device, image.dtype)
        weight = (glyphs * (opacity / 255.0)).unsqueeze(-1)
        ink = shapes.match_channels(shapes.rgb_from_int(color, image.device, image.dtype), image.shape[-1])
        result = image.clone()
        under = result[:, dst_rows, dst_cols]
        result[:, dst_rows, dst_cols] = torch.lerp(under, ink.expand_as(under), weight)
        return (result,)


NODE_CLASS_MAPPINGS = {"ImageDrawText": ImageDrawText}

NODE_DISPLAY_NAME_MAPPINGS = {"ImageDrawText": "Draw Text"}
