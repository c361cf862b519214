"""Geometric nodes that move pixels without resampling: crop, pad, flip, rotate."""

from __future__ import annotations

import torch

from visionatrix.errors import InvalidInput

from . import shapes

PAD_FILL = 0.5
FLIP_METHODS = ["x-axis: vertically", "y-axis: horizontally"]
ROTATIONS = ["none", "90 degrees", "180 degrees", "270 degrees"]


class ImageCrop:
    DESCRIPTION = "Cuts a width x height rectangle whose top-left corner is at x, y; a part past the edge is clipped."
    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "crop"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        size = {"default": 512, "min": 1, "max": shapes.MAX_RESOLUTION, "step": 1}
        offset = {"default": 0, "min": 0, "max": shapes.MAX_RESOLUTION, "step": 1}
        return {
            "required": {
                "image": ("IMAGE",),
                "width": ("INT", dict(size)),
                "height": ("INT", dict(size)),
                "x": ("INT", dict(offset)),
                "y": ("INT", dict(offset)),
            }
        }

    def crop(self, image, width, height, x, y):
        image = shapes.require_image("image", image)
        in_h, in_w = image.shape[1], image.shape[2]
        if x >= in_w:
            raise InvalidInput("x", f"crop starts at x={x}, outside the image width {in_w}")
        if y >= in_h:
            raise InvalidInput("y", f"crop starts at y={y}, outside the image height {in_h}")
        return (image[:, y : y + height, x : x + width],)


def outpaint_mask(height: int, width: int, pads: tuple[int, int, int, int], feathering: int, device) -> torch.Tensor:
    """A ``[H', W']`` mask: 1 on the padding, 0 on the original, ramping up as ``((f - d) / f)^2`` near padded sides.

    ``pads`` is ``(left, top, right, bottom)``; ``d`` is a pixel's distance to the nearest padded side.
    """
    left, top, right, bottom = pads
    mask = torch.ones(top + height + bottom, left + width + right, device=device)
    inner = torch.zeros(height, width, device=device)
    if feathering > 0:
        rows = torch.arange(height, device=device, dtype=torch.float32)[:, None]
        cols = torch.arange(width, device=device, dtype=torch.float32)[None, :]
        far = float(max(height, width, feathering))
        distances = [
            rows if top else torch.full_like(rows, far),
            (height - 1 - rows) if bottom else torch.full_like(rows, far),
            cols if left else torch.full_like(cols, far),
            (width - 1 - cols) if right else torch.full_like(cols, far),
        ]
        nearest = torch.minimum(torch.minimum(distances[0], distances[1]), torch.minimum(distances[2], distances[3]))
        inner = ((feathering - nearest) / feathering).clamp(min=0.0) ** 2
    mask[top : top + height, left : left + width] = inner
    return mask


class ImagePadForOutpaint:
    DESCRIPTION = "Adds grey borders for outpainting and returns a mask that is white over the new area."
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("IMAGE", "MASK")
    FUNCTION = "expand_image"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        pad = {"default": 0, "min": 0, "max": shapes.MAX_RESOLUTION, "step": 8}
        return {
            "required": {
                "image": ("IMAGE",),
                "left": ("INT", dict(pad)),
                "top": ("INT", dict(pad)),
                "right": ("INT", dict(pad)),
                "bottom": ("INT", dict(pad)),
                "feathering": ("INT", {"default": 40, "min": 0, "max": shapes.MAX_RESOLUTION, "step": 1}),
            }
        }

    def expand_image(self, image, left, top, right, bottom, feathering):
        image = shapes.require_image("image", image)
        batch, height, width, channels = image.shape
        shapes.check_pixels("left", width + left + right, height + top + bottom, batch)
        padded = torch.full(
            (batch, top + height + bottom, left + width + right, channels),
            PAD_FILL,
            dtype=image.dtype,
            device=image.device,
        )
        padded[:, top : top + height, left : left + width] = image
        mask = outpaint_mask(height, width, (left, top, right, bottom), feathering, image.device)
        return (padded, mask.expand(batch, -1, -1).contiguous())


class ImageFlip:
    DESCRIPTION = "Mirrors images upside down (x-axis) or left to right (y-axis)."
    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "flip"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"image": ("IMAGE",), "flip_method": (FLIP_METHODS, {"default": FLIP_METHODS[0]})}}

    def flip(self, image, flip_method):
        image = shapes.require_image("image", image)
        dim = 1 if flip_method.startswith("x") else 2
        return (torch.flip(image, dims=[dim]),)


class ImageRotate:
    DESCRIPTION = "Rotates images clockwise by a multiple of 90 degrees."
    CATEGORY = "image/transform"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "rotate"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"image": ("IMAGE",), "rotation": (ROTATIONS, {"default": "none"})}}

    def rotate(self, image, rotation):
        image = shapes.require_image("image", image)
        quarter_turns = ROTATIONS.index(rotation)
        return (torch.rot90(image, k=quarter_turns, dims=[2, 1]).contiguous(),)


NODE_CLASS_MAPPINGS = {
    "ImageCrop": ImageCrop,
    "ImagePadForOutpaint": ImagePadForOutpaint,
    "ImageFlip": ImageFlip,
    "ImageRotate": ImageRotate,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "ImageCrop": "Crop Image",
    "ImagePadForOutpaint": "Pad Image for Outpainting",
    "ImageFlip": "Flip Image",
    "ImageRotate": "Rotate Image",
}
