"""Nodes that change an image's size: to exact dimensions, by a factor, or to a pixel budget."""

from __future__ import annotations

import math

import torch

from . import sampling, shapes

CROP_METHODS = ["disabled", "center"]


def _method_input() -> tuple:
    return (sampling.UPSCALE_METHODS, {"default": "nearest-exact"})


def center_crop_to_aspect(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Cut equal margins off the long side so ``image`` gets the aspect ratio of ``width`` x ``height``."""
    in_h, in_w = image.shape[1], image.shape[2]
    if in_w * height > width * in_h:
        keep = max(1, round(in_h * width / height))
        left = (in_w - keep) // 2
        return image[:, :, left : left + keep]
    keep = max(1, round(in_w * height / width))
    top = (in_h - keep) // 2
    return image[:, top : top + keep]


def target_size(in_w: int, in_h: int, width: int, height: int) -> tuple[int, int]:
    """Fill a 0 in ``width``/``height`` from the other side, keeping the aspect ratio (both 0 keeps the size)."""
    if width == 0 and height == 0:
        return in_w, in_h
    if width == 0:
        return max(1, round(in_w * height / in_h)), height
    if height == 0:
        return width, max(1, round(in_h * width / in_w))
    return width, height


class ImageScale:
    DESCRIPTION = "Resizes images to width x height (a 0 side keeps the aspect ratio), optionally center-cropping."
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        size = {"default": 512, "min": 0, "max": shapes.MAX_RESOLUTION, "step": 1}
        return {
            "required": {
                "image": ("IMAGE",),
                "upscale_method": _method_input(),
                "width": ("INT", dict(size)),
                "height": ("INT", dict(size)),
                "crop": (CROP_METHODS, {"default": "disabled"}),
            }
        }

    def upscale(self, image, upscale_method, width, height, crop):
        image = shapes.require_image("image", image)
        width, height = target_size(image.shape[2], image.shape[1], width, height)
        shapes.check_pixels("width", width, height, image.shape[0])
        if crop == "center":
            image = center_crop_to_aspect(image, width, height)
        return (sampling.resample(image, width, height, upscale_method),)


class ImageScaleBy:
    DESCRIPTION = "Resizes images by a scale factor."
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE",),
                "upscale_method": _method_input(),
                "scale_by": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01}),
            }
        }

    def upscale(self, image, upscale_method, scale_by):
        image = shapes.require_image("image", image)
        width = max(1, round(image.shape[2] * scale_by))
        height = max(1, round(image.shape[1] * scale_by))
        shapes.check_pixels("scale_by", width, height, image.shape[0])
        return (sampling.resample(image, width, height, upscale_method),)


class ImageScaleToTotalPixels:
    DESCRIPTION = "Resizes images to about the given number of megapixels, keeping the aspect ratio."
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE",),
                "upscale_method": _method_input(),
                "megapixels": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 16.0, "step": 0.01}),
            },
            "optional": {
                "resolution_steps": ("INT", {"default": 1, "min": 1, "max": 256, "step": 1}),
            },
        }

    def upscale(self, image, upscale_method, megapixels, resolution_steps=1):
        image = shapes.require_image("image", image)
        in_h, in_w = image.shape[1], image.shape[2]
        scale = math.sqrt(megapixels * 1024 * 1024 / (in_w * in_h))
        width = max(1, round(in_w * scale / resolution_steps)) * resolution_steps
        height = max(1, round(in_h * scale / resolution_steps)) * resolution_steps
        shapes.check_pixels("megapixels", width, height, image.shape[0])
        return (sampling.resample(image, width, height, upscale_method),)


NODE_CLASS_MAPPINGS = {
    "ImageScale": ImageScale,
    "ImageScaleBy": ImageScaleBy,
    "ImageScaleToTotalPixels": ImageScaleToTotalPixels,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "ImageScale": "Upscale Image",
    "ImageScaleBy": "Upscale Image By",
    "ImageScaleToTotalPixels": "Scale Image to Total Pixels",
}
