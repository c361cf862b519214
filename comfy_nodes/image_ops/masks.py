"""MASK nodes: conversion to and from images, inversion, growing and shrinking, thresholds and feathered edges."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from visionatrix.errors import InvalidInput
from visionatrix.nodes import context

from . import shapes

CHANNELS = ["red", "green", "blue", "alpha"]


class _MaskNode:
    CATEGORY = "mask"
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("MASK",)


class ImageToMask(_MaskNode):
    DESCRIPTION = "Takes one channel of images (red, green, blue or alpha) as a mask."
    FUNCTION = "image_to_mask"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"image": ("IMAGE",), "channel": (CHANNELS, {"default": "red"})}}

    def image_to_mask(self, image, channel):
        image = shapes.require_image("image", image)
        index = CHANNELS.index(channel)
        if index >= image.shape[-1]:
            raise InvalidInput("channel", f"the image has {image.shape[-1]} channels, so no {channel} channel")
        return (image[..., index].contiguous(),)


class MaskToImage:
    DESCRIPTION = "Turns masks into grey images (the mask value in all three channels)."
    CATEGORY = "mask"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "mask_to_image"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"mask": ("MASK",)}}

    def mask_to_image(self, mask):
        mask = shapes.require_mask("mask", mask)
        return (mask.unsqueeze(-1).expand(*mask.shape, shapes.RGB_CHANNELS).contiguous(),)


class InvertMask(_MaskNode):
    DESCRIPTION = "Inverts masks (1 - value)."
    FUNCTION = "invert"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"mask": ("MASK",)}}

    def invert(self, mask):
        return (1.0 - shapes.require_mask("mask", mask),)


def _cross_dilate(planes: torch.Tensor) -> torch.Tensor:
    """One step of grey dilation with a 3x3 cross (the pixel and its four direct neighbours)."""
    padded = F.pad(planes, (1, 1, 1, 1), mode="replicate")
    neighbours = (padded[..., :-2, 1:-1], padded[..., 2:, 1:-1], padded[..., 1:-1, :-2], padded[..., 1:-1, 2:])
    result = planes
    for shifted in neighbours:
        result = torch.maximum(result, shifted)
    return result


def grow(mask: torch.Tensor, expand: int, tapered_corners: bool) -> torch.Tensor:
    """Dilate ``mask`` by ``expand`` pixels (erode when negative); a square reach, or a diamond when tapered."""
    if expand == 0:
        return mask
    sign = 1.0 if expand > 0 else -1.0
    steps = abs(expand)
    planes = (mask * sign).unsqueeze(1)
    if not tapered_corners:
        planes = F.max_pool2d(planes, kernel_size=(2 * steps + 1, 1), stride=1, padding=(steps, 0))
        planes = F.max_pool2d(planes, kernel_size=(1, 2 * steps + 1), stride=1, padding=(0, steps))
    else:
        ctx = context.current()
        for step in range(steps):
            ctx.progress(step, steps)
            planes = _cross_dilate(planes)
    return (planes * sign).squeeze(1)


class GrowMask(_MaskNode):
    DESCRIPTION = "Grows masks by expand pixels, or shrinks them when expand is negative."
    FUNCTION = "expand_mask"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        expand = {"default": 0, "min": -shapes.MAX_RESOLUTION, "max": shapes.MAX_RESOLUTION, "step": 1}
        return {
            "required": {
                "mask": ("MASK",),
                "expand": ("INT", expand),
                "tapered_corners": ("BOOLEAN", {"default": True}),
            }
        }

    def expand_mask(self, mask, expand, tapered_corners):
        return (grow(shapes.require_mask("mask", mask), expand, tapered_corners),)


class ThresholdMask(_MaskNode):
    DESCRIPTION = "Sets mask pixels above value to 1 and the rest to 0."
    FUNCTION = "threshold"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        value = {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01}
        return {"required": {"mask": ("MASK",), "value": ("FLOAT", value)}}

    def threshold(self, mask, value):
        mask = shapes.require_mask("mask", mask)
        return ((mask > value).to(mask.dtype),)


class ToBinaryMask(_MaskNode):
    DESCRIPTION = "Sets mask pixels at or above threshold / 255 to 1 and the rest to 0."
    FUNCTION = "to_binary"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        threshold = {"default": 20, "min": 1, "max": 255, "step": 1}
        return {"required": {"mask": ("MASK",), "threshold": ("INT", threshold)}}

    def to_binary(self, mask, threshold):
        mask = shapes.require_mask("mask", mask)
        return ((mask >= threshold / 255.0).to(mask.dtype),)


def edge_ramp(length: int, start: int, end: int, device, dtype) -> torch.Tensor:
    """Factors along one axis that rise linearly over ``start`` pixels and fall over the last ``end`` pixels."""
    position = torch.arange(length, device=device, dtype=dtype)
    ramp = torch.ones(length, device=device, dtype=dtype)
    if start > 0:
        ramp = ramp * ((position + 1.0) / start).clamp(max=1.0)
    if end > 0:
        ramp = ramp * ((length - position) / end).clamp(max=1.0)
    return ramp


class FeatherMask(_MaskNode):
    DESCRIPTION = "Fades masks out linearly towards each edge over the given number of pixels."
    FUNCTION = "feather"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        width = {"default": 0, "min": 0, "max": shapes.MAX_RESOLUTION, "step": 1}
        sides = {side: ("INT", dict(width)) for side in ("left", "top", "right", "bottom")}
        return {"required": {"mask": ("MASK",), **sides}}

    def feather(self, mask, left, top, right, bottom):
        mask = shapes.require_mask("mask", mask)
        _, height, width = mask.shape
        rows = edge_ramp(height, top, bottom, mask.device, mask.dtype)
        cols = edge_ramp(width, left, right, mask.device, mask.dtype)
        return (mask * rows[:, None] * cols[None, :],)


NODE_CLASS_MAPPINGS = {
    "ImageToMask": ImageToMask,
    "MaskToImage": MaskToImage,
    "InvertMask": InvertMask,
    "GrowMask": GrowMask,
    "ThresholdMask": ThresholdMask,
    "ToBinaryMask": ToBinaryMask,
    "FeatherMask": FeatherMask,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "ImageToMask": "Convert Image to Mask",
    "MaskToImage": "Convert Mask to Image",
    "InvertMask": "Invert Mask",
    "GrowMask": "Grow Mask",
    "ThresholdMask": "Threshold Mask",
    "ToBinaryMask": "To Binary Mask",
    "FeatherMask": "Feather Mask",
}
