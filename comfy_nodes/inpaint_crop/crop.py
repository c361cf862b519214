"""InpaintCrop (lquesada's ComfyUI-Inpaint-CropAndStitch): cut the area around a mask, sized for sampling.

Same class name, inputs, defaults, options and outputs as the original (the version with ranged, forced and free
size). Per image: the mask has its holes filled, is grown and blurred, inverted, as the options say; the context
box is the bounding box of mask + ``optional_context_mask`` (the whole picture when both are empty); the box is
placed by :mod:`.geometry` and the crop is rendered from the mirrored canvas (:mod:`.canvas`), rescaled with
``rescale_algorithm`` (the masks with ``nearest``). The STITCH output carries what InpaintStitch needs to put the
result back: a dict of per-image lists, keys as the original's (``original_image`` holds the picture itself, not
the canvas; ``start_x``/``start_y`` place it on the canvas).

A batch of several images needs ``forced size`` (as the original), so every crop has the same size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from comfy_nodes.image_ops import shapes
from visionatrix.errors import InvalidInput

from . import canvas, geometry, mask_ops, resampling

STITCH_KEYS = ("x", "y", "original_image", "cropped_mask_blend", "rescale_x", "rescale_y", "start_x", "start_y",
               "initial_width", "initial_height")


class InpaintCrop:
    DESCRIPTION = (
        "Crops the area around the mask (grown by the context settings, sized by the mode) and rescales it for "
        "sampling; outputs the crop, its mask and a STITCH for Inpaint Stitch, which puts the result back without "
        "touching the rest of the image."
    )
    CATEGORY = "inpaint"
    RETURN_TYPES = ("STITCH", "IMAGE", "MASK")
    RETURN_NAMES = ("stitch", "cropped_image", "cropped_mask")
    FUNCTION = "inpaint_crop"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        def size(default: int) -> tuple:
            return ("INT", {"default": default, "min": 0, "max": shapes.MAX_RESOLUTION, "step": 1})

        return {
            "required": {
                "image": ("IMAGE",),
                "mask": ("MASK",),
                "context_expand_pixels": size(20),
                "context_expand_factor": ("FLOAT", {"default": 1.0, "min": 1.0, "max": 100.0, "step": 0.01}),
                "fill_mask_holes": ("BOOLEAN", {"default": True}),
                "blur_mask_pixels": ("FLOAT", {"default": 16.0, "min": 0.0, "max": 256.0, "step": 0.1}),
                "invert_mask": ("BOOLEAN", {"default": False}),
                "blend_pixels": ("FLOAT", {"default": 16.0, "min": 0.0, "max": 32.0, "step": 0.1}),
                "rescale_algorithm": (list(resampling.RESCALE_ALGORITHMS), {"default": "bicubic"}),
                "mode": (list(geometry.MODES), {"default": "ranged size"}),
                "force_width": size(1024),
                "force_height": size(1024),
                "rescale_factor": ("FLOAT", {"default": 1.00, "min": 0.01, "max": 100.0, "step": 0.01}),
                "min_width": size(512),
                "min_height": size(512),
                "max_width": size(768),
                "max_height": size(768),
                "padding": (list(geometry.PADDINGS), {"default": 32}),
            },
            "optional": {"optional_context_mask": ("MASK",)},
        }

    def inpaint_crop(self, image, mask, context_expand_pixels, context_expand_factor, fill_mask_holes,
                     blur_mask_pixels, invert_mask, blend_pixels, rescale_algorithm, mode, force_width, force_height,
                     rescale_factor, min_width, min_height, max_width, max_height, padding,
                     optional_context_mask=None):
        image = shapes.require_image("image", image)
        mask = shapes.require_mask("mask", mask)
        context = None if optional_context_mask is None else shapes.require_mask("optional_context_mask",
                                                                                 optional_context_mask)
        resampling.check_algorithm("rescale_algorithm", rescale_algorithm)
        settings = geometry.check_settings(geometry.CropSettings(
            int(context_expand_pixels), float(context_expand_factor), float(blend_pixels), mode, int(force_width),
            int(force_height), float(rescale_factor), int(padding), int(min_width), int(min_height), int(max_width),
            int(max_height)))
        batch = image.shape[0]
        if batch > 1 and mode != "forced size":
            raise InvalidInput("mode", f"a batch of {batch} images needs 'forced size' (crops must share a size)")
        for name, tensor in (("mask", mask), ("optional_context_mask", context)):
            if tensor is not None and tensor.shape[0] != batch:
                raise InvalidInput(name, f"batch of {tensor.shape[0]} does not match the {batch} images")
        options = MaskOptions(bool(fill_mask_holes), float(blur_mask_pixels), bool(invert_mask), float(blend_pixels))
        stitch: dict[str, list[Any]] = {key: [] for key in STITCH_KEYS}
        crops, crop_masks = [], []
        for index in range(batch):
            one_context = None if context is None else context[index : index + 1]
            piece, crop, crop_mask = crop_one(image[index : index + 1], mask[index : index + 1], one_context,
                                              settings, options, rescale_algorithm)
            for key in STITCH_KEYS:
                stitch[key].append(piece[key])
            crops.append(crop)
            crop_masks.append(crop_mask)
        if len({tuple(crop.shape) for crop in crops}) > 1:
            raise InvalidInput("mode", f"the crops differ in size ({[tuple(c.shape[1:3]) for c in crops]})")
        return stitch, torch.cat(crops), torch.cat(crop_masks)


@dataclass(frozen=True)
class MaskOptions:
    """The InpaintCrop inputs that shape the masks."""

    fill_holes: bool
    blur_pixels: float
    invert: bool
    blend_pixels: float


def _fit_mask(name: str, mask: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """``mask`` on the image's device; an empty mask of another size (LoadImage's 64x64 placeholder) becomes an
    empty mask of the image's size."""
    mask = mask.to(image.device, torch.float32)
    if mask.shape[1:] == image.shape[1:3]:
        return mask
    if not bool(mask.any()):
        return torch.zeros(image.shape[:3], device=image.device)
    raise InvalidInput(name, f"size {tuple(mask.shape[1:])} does not match the image {tuple(image.shape[1:3])}")


def prepare_mask(mask: torch.Tensor, options: MaskOptions) -> torch.Tensor:
    """Fill holes, grow and blur, invert: in the original's order."""
    if options.fill_holes:
        mask = mask_ops.fill_holes(mask)
    mask = mask_ops.grow_and_blur(mask, options.blur_pixels)
    return 1.0 - mask if options.invert else mask


def bounding_box(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """``(x_min, x_max, y_min, y_max)`` of the non-zero pixels of a ``[1, H, W]`` mask; None when empty."""
    rows = torch.nonzero(mask[0].any(dim=1)).flatten()
    cols = torch.nonzero(mask[0].any(dim=0)).flatten()
    if rows.numel() == 0:
        return None
    return int(cols[0]), int(cols[-1]), int(rows[0]), int(rows[-1])


def crop_one(image: torch.Tensor, mask: torch.Tensor, context: torch.Tensor | None,
             settings: geometry.CropSettings, options: MaskOptions, algorithm: str
             ) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
    """Crop one image (batch of 1): its STITCH entry, the cropped image and the cropped mask."""
    mask = prepare_mask(_fit_mask("mask", mask, image), options)
    if context is not None:
        context = _fit_mask("optional_context_mask", context, image)
        context = mask if not bool(context.any()) else (context + mask).clamp(0.0, 1.0)
    else:
        context = mask
    extension = geometry.Extension.around(image.shape[2], image.shape[1])
    plan = geometry.plan_crop(extension, bounding_box(context), settings)
    planes = image.movedim(-1, 1)
    cropped = _render(canvas.gatherer(planes, extension, mirror=True, outside=0.0), plan, algorithm)
    cropped = cropped.clamp(0.0, 1.0).movedim(1, -1)
    mask_planes = mask.unsqueeze(1)
    cropped_mask = _render(canvas.gatherer(mask_planes, extension, mirror=False, outside=1.0), plan, "nearest")
    blend = _render(canvas.gatherer(mask_planes, extension, mirror=True, outside=0.0), plan, "nearest")
    blend = mask_ops.grow_and_blur(blend.squeeze(1), options.blend_pixels)
    piece = {
        "x": plan.x_min, "y": plan.y_min, "original_image": image, "cropped_mask_blend": blend,
        "rescale_x": plan.scale_x, "rescale_y": plan.scale_y, "start_x": extension.left, "start_y": extension.top,
        "initial_width": extension.width, "initial_height": extension.height,
    }
    return piece, cropped, cropped_mask.squeeze(1)


def _render(gather: resampling.Gather, plan: geometry.CropPlan, algorithm: str) -> torch.Tensor:
    """The plan's crop of the (rescaled) canvas: ``[1, C, h, w]``."""
    window = (plan.x_min, plan.x_max + 1, plan.y_min, plan.y_max + 1)
    if not plan.rescaled:
        return gather(torch.arange(plan.y_min, plan.y_max + 1), torch.arange(plan.x_min, plan.x_max + 1))
    ext = plan.extension
    return resampling.resample_window(gather, (ext.canvas_width, ext.canvas_height),
                                      (plan.scaled_width, plan.scaled_height), window, algorithm)
