"""``ImageResize+`` (cubiq's ComfyUI_essentials "🔧 Image Resize"): resize by one of four methods, on a condition.

Same node name, inputs, options and outputs (IMAGE, width, height) as the original, and its arithmetic:

- ``multiple_of`` > 1 first rounds the requested width and height down to multiples of it;
- ``stretch`` resizes to width x height (a 0 keeps that side); ``keep proportion`` fits inside them keeping the
  aspect ratio (``round`` of each side; a 0 side is unbounded when the other side grows, else the image's own);
  ``pad`` does the same and then pads with black to the requested size, centred; ``fill / crop`` covers the
  requested size and cuts the overflow, centred;
- the resize happens only when ``condition`` holds, comparing the image with the size the method computed
  (``if bigger area`` / ``if smaller area`` compare pixel counts);
- finally, a side that is not a multiple of ``multiple_of`` is cut to one, centred.

``nearest``, ``bilinear``, ``bicubic``, ``area`` and ``nearest-exact`` are torch's interpolation modes (no
antialiasing, as the original); ``lanczos`` is the Lanczos-3 filter of the image_ops pack. Results are clamped
to 0..1.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from comfy_nodes.image_ops import sampling, shapes
from visionatrix.errors import InvalidInput

INTERPOLATIONS = ["nearest", "bilinear", "bicubic", "area", "nearest-exact", "lanczos"]
METHODS = ["stretch", "keep proportion", "fill / crop", "pad"]
CONDITIONS = ["always", "downscale if bigger", "upscale if smaller", "if bigger area", "if smaller area"]


def _choice(name: str, value: Any, options: list[str]) -> str:
    if value not in options:
        raise InvalidInput(name, f"{value!r} is not one of {options}")
    return value


def _whole(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise InvalidInput(name, f"expected an integer, got {value!r}")
    if not low <= value <= high:
        raise InvalidInput(name, f"{int(value)} is outside {low}..{high}")
    return int(value)


def plan_size(ow: int, oh: int, width: int, height: int, method: str, multiple_of: int
              ) -> tuple[int, int, tuple[int, int, int, int], tuple[int, int, int, int] | None]:
    """The resized size, the padding ``(left, right, top, bottom)`` and the ``fill / crop`` cut
    ``(x, y, x2, y2)`` (None for other methods) for an ``ow`` x ``oh`` image."""
    if multiple_of > 1:
        width, height = width - width % multiple_of, height - height % multiple_of
    pads = (0, 0, 0, 0)
    if method in ("keep proportion", "pad"):
        if width == 0:
            width = shapes.MAX_RESOLUTION if oh < height else ow
        if height == 0:
            height = shapes.MAX_RESOLUTION if ow < width else oh
        ratio = min(width / ow, height / oh)
        new_w, new_h = round(ow * ratio), round(oh * ratio)
        if method == "pad":
            left, top = (width - new_w) // 2, (height - new_h) // 2
            pads = (left, width - new_w - left, top, height - new_h - top)
        return new_w, new_h, pads, None
    width, height = width or ow, height or oh
    if method == "stretch":
        return width, height, pads, None
    ratio = max(width / ow, height / oh)
    new_w, new_h = round(ow * ratio), round(oh * ratio)
    x, y = (new_w - width) // 2, (new_h - height) // 2
    x2, y2 = x + width, y + height
    x = max(x - max(x2 - new_w, 0), 0)
    y = max(y - max(y2 - new_h, 0), 0)
    return new_w, new_h, pads, (x, y, x2, y2)


def condition_holds(condition: str, ow: int, oh: int, width: int, height: int) -> bool:
    if condition == "always":
        return True
    if condition == "downscale if bigger":
        return oh > height or ow > width
    if condition == "upscale if smaller":
        return oh < height or ow < width
    if condition == "if bigger area":
        return oh * ow > height * width
    return oh * ow < height * width


def interpolate(image: torch.Tensor, width: int, height: int, interpolation: str) -> torch.Tensor:
    """``[B, H, W, C]`` resized with the original's interpolation names."""
    if interpolation == "lanczos":
        return sampling.resample(image, width, height, "lanczos")
    return F.interpolate(image.movedim(-1, 1), size=(height, width), mode=interpolation).movedim(1, -1)


class ImageResizePlus:
    DESCRIPTION = (
        "Resizes images by stretching, keeping the proportion, filling and cropping, or padding, optionally only "
        "when the image is bigger or smaller; multiple_of makes the sides multiples of a number. Also outputs the "
        "final width and height."
    )
    CATEGORY = "essentials/image manipulation"
    RETURN_TYPES = ("IMAGE", "INT", "INT")
    RETURN_NAMES = ("IMAGE", "width", "height")
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        side = {"default": 512, "min": 0, "max": shapes.MAX_RESOLUTION, "step": 1}
        return {
            "required": {
                "image": ("IMAGE",),
                "width": ("INT", dict(side)),
                "height": ("INT", dict(side)),
                "interpolation": (list(INTERPOLATIONS),),
                "method": (list(METHODS),),
                "condition": (list(CONDITIONS),),
                "multiple_of": ("INT", {"default": 0, "min": 0, "max": 512, "step": 1}),
            }
        }

    def execute(self, image, width, height, method="stretch", interpolation="nearest", condition="always",
                multiple_of=0, keep_proportion=False):
        image = shapes.require_image("image", image)
        width = _whole("width", width, 0, shapes.MAX_RESOLUTION)
        height = _whole("height", height, 0, shapes.MAX_RESOLUTION)
        multiple_of = _whole("multiple_of", multiple_of, 0, 512)
        method = "keep proportion" if keep_proportion else _choice("method", method, METHODS)
        _choice("interpolation", interpolation, INTERPOLATIONS)
        _choice("condition", condition, CONDITIONS)
        oh, ow = image.shape[1], image.shape[2]
        new_w, new_h, pads, cut = plan_size(ow, oh, width, height, method, multiple_of)
        out = image
        if condition_holds(condition, ow, oh, new_w, new_h):
            shapes.check_pixels("width", new_w + pads[0] + pads[1], new_h + pads[2] + pads[3], image.shape[0])
            out = interpolate(image, new_w, new_h, interpolation)
            if any(pads):
                out = F.pad(out.movedim(-1, 1), pads, value=0.0).movedim(1, -1)
            if cut is not None:
                x, y, x2, y2 = cut
                out = out[:, y:y2, x:x2]
        if multiple_of > 1:
            out_h, out_w = out.shape[1], out.shape[2]
            x, y = (out_w % multiple_of) // 2, (out_h % multiple_of) // 2
            out = out[:, y : out_h - (out_h % multiple_of - y), x : out_w - (out_w % multiple_of - x)]
        if out.shape[1] == 0 or out.shape[2] == 0:
            raise InvalidInput("multiple_of", f"{multiple_of} is larger than the resized image "
                                              f"({out.shape[2]}x{out.shape[1]})")
        out = out.clamp(0.0, 1.0)
        return out, out.shape[2], out.shape[1]
