"""Nodes that combine two images: blending with a mode, and pasting one onto another through a mask."""

from __future__ import annotations

import torch

from . import resize, sampling, shapes


def _soft_light(base: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """The W3C compositing soft-light formula."""
    curve = torch.where(base <= 0.25, ((16.0 * base - 12.0) * base + 4.0) * base, base.clamp(min=0).sqrt())
    darker = base - (1.0 - 2.0 * top) * base * (1.0 - base)
    lighter = base + (2.0 * top - 1.0) * (curve - base)
    return torch.where(top <= 0.5, darker, lighter)


BLEND_MODES = {
    "normal": lambda base, top: top,
    "multiply": lambda base, top: base * top,
    "screen": lambda base, top: 1.0 - (1.0 - base) * (1.0 - top),
    "overlay": lambda base, top: torch.where(base <= 0.5, 2.0 * base * top, 1.0 - 2.0 * (1.0 - base) * (1.0 - top)),
    "soft_light": _soft_light,
    "difference": lambda base, top: (base - top).abs(),
}


def fit_to(image: torch.Tensor, like: torch.Tensor, method: str) -> torch.Tensor:
    """``image`` center-cropped and resized to the height and width of ``like``, with ``like``'s channel count."""
    height, width = like.shape[1], like.shape[2]
    if image.shape[1:3] != like.shape[1:3]:
        image = sampling.resample(resize.center_crop_to_aspect(image, width, height), width, height, method)
    return shapes.match_channels(image, like.shape[-1])


class ImageBlend:
    DESCRIPTION = "Blends image2 over image1 with a blend mode, mixed in by blend_factor; alpha of image1 is kept."
    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "blend_images"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image1": ("IMAGE",),
                "image2": ("IMAGE",),
                "blend_factor": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01}),
                "blend_mode": (list(BLEND_MODES), {"default": "normal"}),
            }
        }

    def blend_images(self, image1, image2, blend_factor, blend_mode):
        image1 = shapes.require_image("image1", image1)
        image2 = fit_to(shapes.require_image("image2", image2), image1, "bicubic")
        batch = shapes.common_batch_size({"image1": image1, "image2": image2})
        base, alpha = shapes.split_alpha(image1.expand(batch, -1, -1, -1))
        top, _ = shapes.split_alpha(image2.expand(batch, -1, -1, -1))
        blended = BLEND_MODES[blend_mode](base, top)
        mixed = torch.lerp(base, blended.expand_as(base), blend_factor).clamp(0.0, 1.0)
        return (shapes.join_alpha(mixed, alpha),)


def visible_region(x: int, y: int, source_hw: tuple[int, int], dest_hw: tuple[int, int]):
    """Destination and source slices of the part of the source that lands on the destination (None if none)."""
    (src_h, src_w), (dst_h, dst_w) = source_hw, dest_hw
    left, top = max(x, 0), max(y, 0)
    right, bottom = min(x + src_w, dst_w), min(y + src_h, dst_h)
    if left >= right or top >= bottom:
        return None
    dest = (slice(top, bottom), slice(left, right))
    source = (slice(top - y, bottom - y), slice(left - x, right - x))
    return dest, source


class ImageCompositeMasked:
    DESCRIPTION = "Pastes source onto destination with its top-left corner at x, y, through an optional mask."
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("IMAGE",)
    FUNCTION = "composite"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        offset = {"default": 0, "min": -shapes.MAX_RESOLUTION, "max": shapes.MAX_RESOLUTION, "step": 1}
        return {
            "required": {
                "destination": ("IMAGE",),
                "source": ("IMAGE",),
                "x": ("INT", dict(offset)),
                "y": ("INT", dict(offset)),
                "resize_source": ("BOOLEAN", {"default": False}),
            },
            "optional": {"mask": ("MASK",)},
        }

    def composite(self, destination, source, x, y, resize_source, mask=None):
        destination = shapes.require_image("destination", destination)
        source = shapes.match_channels(shapes.require_image("source", source), destination.shape[-1])
        if resize_source:
            source = sampling.resample(source, destination.shape[2], destination.shape[1], "bilinear")
        mask = self._source_mask(mask, source)
        batch = shapes.common_batch_size({"destination": destination, "source": source, "mask": mask})
        result = destination.expand(batch, -1, -1, -1).clone()
        region = visible_region(x, y, source.shape[1:3], destination.shape[1:3])
        if region is None:
            return (result,)
        (dst_rows, dst_cols), (src_rows, src_cols) = region
        under = result[:, dst_rows, dst_cols]
        over = source.expand(batch, -1, -1, -1)[:, src_rows, src_cols]
        weight = mask.expand(batch, -1, -1)[:, src_rows, src_cols].unsqueeze(-1)
        result[:, dst_rows, dst_cols] = torch.lerp(under, over, weight)
        return (result,)

    @staticmethod
    def _source_mask(mask, source: torch.Tensor) -> torch.Tensor:
        """The mask as ``[B, h, w]`` at the source's size (all ones when no mask is given)."""
        height, width = source.shape[1], source.shape[2]
        if mask is None:
            return torch.ones(1, height, width, dtype=source.dtype, device=source.device)
        mask = shapes.require_mask("mask", mask)
        return sampling.resample_mask(mask, width, height).to(source.dtype)


NODE_CLASS_MAPPINGS = {
    "ImageBlend": ImageBlend,
    "ImageCompositeMasked": ImageCompositeMasked,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "ImageBlend": "Blend Images",
    "ImageCompositeMasked": "Composite Images (Masked)",
}
