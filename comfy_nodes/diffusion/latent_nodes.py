"""LATENT nodes: EmptyLatentImage, SetLatentNoiseMask, LatentUpscale(By), RepeatLatentBatch, LatentFromBatch and
LatentComposite (ComfyUI's inputs, defaults and outputs). LATENT is ComfyUI's dict ``{"samples": [B, 4, h, w],
"noise_mask"?, "batch_index"?}``; every node returns a new dict and never changes its input's tensors."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from visionatrix.diffusion.vae import require_latent
from visionatrix.errors import InvalidInput
from visionatrix.nodes import pixels

MAX_RESOLUTION = 16384
LATENT_CHANNELS = 4
UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "bislerp"]
CROP_METHODS = ["disabled", "center"]
MIN_UPSCALE_SIZE = 64
"""LatentUpscale never goes below 64 pixels a side (as ComfyUI)."""


class EmptyLatentImage:
    DESCRIPTION = "A batch of empty (zero) latents of the given size, to be denoised from noise."
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The empty latent image batch.",)
    FUNCTION = "generate"
    PIXEL_INPUTS = ("width", "height", "batch_size")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        size = {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8}
        return {"required": {
            "width": ("INT", {**size, "tooltip": "The width of the latent images in pixels."}),
            "height": ("INT", {**size, "tooltip": "The height of the latent images in pixels."}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096,
                                   "tooltip": "The number of latent images in the batch."})}}

    def generate(self, width: int, height: int, batch_size: int = 1) -> tuple[dict[str, Any]]:
        if int(width) < 8 or int(height) < 8 or int(batch_size) < 1:
            raise InvalidInput("width", f"an empty latent of {width}x{height} pixels x {batch_size} has no cells")
        pixels.check_pixels("width", width, height, batch_size)
        shape = (int(batch_size), LATENT_CHANNELS, int(height) // 8, int(width) // 8)
        return ({"samples": torch.zeros(shape, dtype=torch.float32)},)


class SetLatentNoiseMask:
    DESCRIPTION = "Sets the mask of the latent: sampling changes only the masked part (1 = resample, 0 = keep)."
    CATEGORY = "latent/inpaint"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "set_mask"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": ("LATENT",), "mask": ("MASK",)}}

    def set_mask(self, samples: Any, mask: Any) -> tuple[dict[str, Any]]:
        latent = require_latent("samples", samples)
        if not isinstance(mask, torch.Tensor) or mask.ndim not in (2, 3):
            raise InvalidInput("mask", "expected a MASK [batch, height, width]")
        return ({**latent, "noise_mask": mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1])},)


def bislerp(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Bilinear resampling where each blend of two cells is a spherical interpolation of their channel vectors
    (directions slerped, lengths lerped): width first, then height; sample positions as bilinear's (half-pixel
    centres, clamped to the edges)."""
    dtype = samples.dtype
    out = _slerp_axis(samples.float(), width, axis=-1)
    return _slerp_axis(out, height, axis=-2).to(dtype)


def _slerp_axis(samples: torch.Tensor, size: int, *, axis: int) -> torch.Tensor:
    old = samples.shape[axis]
    positions = torch.arange(old, dtype=torch.float32, device=samples.device).reshape(1, 1, 1, -1)
    positions = F.interpolate(positions, size=(1, size), mode="bilinear").flatten()
    low = positions.floor()
    ratio = (positions - low).reshape(-1, 1)
    low_index = low.long()
    high_index = (low_index + 1).clamp(max=old - 1)
    moved = samples.movedim(axis, -1).movedim(1, -1)  # [..., old, C]
    first, second = moved[..., low_index, :], moved[..., high_index, :]
    blended = _slerp(first.reshape(-1, first.shape[-1]), second.reshape(-1, first.shape[-1]),
                     ratio.expand(*first.shape[:-1], 1).reshape(-1, 1))
    return blended.reshape(first.shape).movedim(-1, 1).movedim(-1, axis)


def _slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Rows of ``a`` towards rows of ``b`` by ``t`` ([N, 1]) along the great circle, lengths interpolated
    linearly; nearly equal directions keep ``a``, nearly opposite ones blend linearly; zero rows count as 0."""
    norm_a, norm_b = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    unit_a = torch.where(norm_a == 0, torch.zeros_like(a), a / norm_a)
    unit_b = torch.where(norm_b == 0, torch.zeros_like(b), b / norm_b)
    cosine = (unit_a * unit_b).sum(-1, keepdim=True)
    omega = torch.acos(cosine)
    sine = torch.sin(omega)
    result = (torch.sin((1.0 - t) * omega) / sine * unit_a + torch.sin(t * omega) / sine * unit_b)
    result = result * (norm_a * (1.0 - t) + norm_b * t)
    result = torch.where(cosine > 1 - 1e-5, a, result)
    return torch.where(cosine < 1e-5 - 1, a * (1.0 - t) + b * t, result)


def upscale(samples: torch.Tensor, width: int, height: int, method: str, crop: str) -> torch.Tensor:
    """``samples`` resized to ``width`` x ``height`` cells; ``crop="center"`` first cuts it to the new aspect."""
    if method not in UPSCALE_METHODS:
        raise InvalidInput("upscale_method", f"{method!r} is not one of {', '.join(UPSCALE_METHODS)}")
    if crop == "center":
        old_w, old_h = samples.shape[-1], samples.shape[-2]
        old_aspect, new_aspect = old_w / old_h, width / height
        x = y = 0
        if old_aspect > new_aspect:
            x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
        elif old_aspect < new_aspect:
            y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
        samples = samples[..., y:old_h - y, x:old_w - x]
    if method == "bislerp":
        return bislerp(samples, width, height)
    return F.interpolate(samples, size=(height, width), mode=method)


class LatentUpscale:
    DESCRIPTION = "Resizes latents to a size in pixels (0 for one side keeps the aspect ratio; 64 pixels at least)."
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        size = {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 8}
        return {"required": {"samples": ("LATENT",), "upscale_method": (UPSCALE_METHODS,),
                             "width": ("INT", size), "height": ("INT", size), "crop": (CROP_METHODS,)}}

    def upscale(self, samples: Any, upscale_method: str, width: int, height: int, crop: str,
                ) -> tuple[dict[str, Any]]:
        latent = require_latent("samples", samples)
        tensor = latent["samples"]
        if width == 0 and height == 0:
            return ({**latent},)
        if width == 0:
            height = max(MIN_UPSCALE_SIZE, height)
            width = max(MIN_UPSCALE_SIZE, round(tensor.shape[-1] * height / tensor.shape[-2]))
        elif height == 0:
            width = max(MIN_UPSCALE_SIZE, width)
            height = max(MIN_UPSCALE_SIZE, round(tensor.shape[-2] * width / tensor.shape[-1]))
        else:
            width, height = max(MIN_UPSCALE_SIZE, width), max(MIN_UPSCALE_SIZE, height)
        pixels.check_pixels("width", int(width) // 8 * 8, int(height) // 8 * 8, tensor.shape[0])
        return ({**latent, "samples": upscale(tensor, int(width) // 8, int(height) // 8, upscale_method, crop)},)


class LatentUpscaleBy:
    DESCRIPTION = "Resizes latents by a factor."
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "upscale"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": ("LATENT",), "upscale_method": (UPSCALE_METHODS,),
                             "scale_by": ("FLOAT", {"default": 1.5, "min": 0.01, "max": 8.0, "step": 0.01})}}

    def upscale(self, samples: Any, upscale_method: str, scale_by: float) -> tuple[dict[str, Any]]:
        latent = require_latent("samples", samples)
        tensor = latent["samples"]
        width, height = round(tensor.shape[-1] * scale_by), round(tensor.shape[-2] * scale_by)
        if width < 1 or height < 1:
            raise InvalidInput("scale_by", f"scaling {tensor.shape[-1]}x{tensor.shape[-2]} cells by {scale_by} "
                                           "leaves nothing")
        pixels.check_pixels("scale_by", width * 8, height * 8, tensor.shape[0])
        return ({**latent, "samples": upscale(tensor, width, height, upscale_method, "disabled")},)


class RepeatLatentBatch:
    DESCRIPTION = "Repeats the batch of latents (with their noise masks and batch indices) amount times."
    CATEGORY = "latent/batch"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "repeat"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": ("LATENT",), "amount": ("INT", {"default": 1, "min": 1, "max": 64})}}

    def repeat(self, samples: Any, amount: int) -> tuple[dict[str, Any]]:
        latent = require_latent("samples", samples)
        amount = int(amount)
        shape = latent["samples"].shape
        pixels.check_pixels("amount", shape[-1] * 8, shape[-2] * 8, shape[0] * amount)
        out = {**latent, "samples": latent["samples"].repeat(amount, 1, 1, 1)}
        mask = latent.get("noise_mask")
        if isinstance(mask, torch.Tensor) and mask.shape[0] > 1:
            out["noise_mask"] = mask.repeat(amount, 1, 1, 1)
        if "batch_index" in latent:
            indices = list(latent["batch_index"])
            offset = max(indices) - min(indices) + 1
            out["batch_index"] = indices + [index + copy * offset for copy in range(1, amount) for index in indices]
        return (out,)


class LatentFromBatch:
    DESCRIPTION = ("Takes length latents from batch_index on; they keep their noise (the batch index each was drawn "
                   "at).")
    CATEGORY = "latent/batch"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "frombatch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"samples": ("LATENT",), "batch_index": ("INT", {"default": 0, "min": 0, "max": 63}),
                             "length": ("INT", {"default": 1, "min": 1, "max": 64})}}

    def frombatch(self, samples: Any, batch_index: int, length: int) -> tuple[dict[str, Any]]:
        latent = require_latent("samples", samples)
        tensor = latent["samples"]
        start = min(tensor.shape[0] - 1, int(batch_index))
        length = min(tensor.shape[0] - start, int(length))
        out = {**latent, "samples": tensor[start:start + length].clone()}
        mask = latent.get("noise_mask")
        if isinstance(mask, torch.Tensor):
            if mask.shape[0] == 1:
                out["noise_mask"] = mask.clone()
            else:
                if mask.shape[0] < tensor.shape[0]:
                    mask = mask.repeat(math.ceil(tensor.shape[0] / mask.shape[0]), 1, 1, 1)[:tensor.shape[0]]
                out["noise_mask"] = mask[start:start + length].clone()
        if "batch_index" in latent:
            out["batch_index"] = list(latent["batch_index"])[start:start + length]
        else:
            out["batch_index"] = list(range(start, start + length))
        return (out,)


class LatentComposite:
    DESCRIPTION = ("Pastes samples_from into samples_to at x, y (pixels, rounded down to latent cells of 8), its "
                   "inner edges faded over feather pixels.")
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "composite"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        offset = {"default": 0, "min": 0, "max": MAX_RESOLUTION, "step": 8}
        return {"required": {"samples_to": ("LATENT",), "samples_from": ("LATENT",), "x": ("INT", offset),
                             "y": ("INT", offset), "feather": ("INT", offset)}}

    def composite(self, samples_to: Any, samples_from: Any, x: int, y: int, feather: int = 0,
                  ) -> tuple[dict[str, Any]]:
        target = require_latent("samples_to", samples_to)["samples"]
        source = require_latent("samples_from", samples_from)["samples"]
        if source.shape[1] != target.shape[1]:
            raise InvalidInput("samples_from", f"{source.shape[1]} latent channels do not fit {target.shape[1]}")
        if source.shape[0] not in (1, target.shape[0]):
            raise InvalidInput("samples_from", f"a batch of {source.shape[0]} does not fit a batch of "
                                               f"{target.shape[0]}")
        x, y, feather = int(x) // 8, int(y) // 8, int(feather) // 8
        result = target.clone()
        height, width = min(source.shape[2], target.shape[2] - y), min(source.shape[3], target.shape[3] - x)
        if height > 0 and width > 0:
            piece = source[:, :, :height, :width].to(device=target.device, dtype=target.dtype)
            region = (slice(None), slice(None), slice(y, y + height), slice(x, x + width))
            if feather > 0:
                rows = _fade(height, feather, start=y != 0, end=y + height < target.shape[2], device=target.device)
                cols = _fade(width, feather, start=x != 0, end=x + width < target.shape[3], device=target.device)
                mask = (rows[:, None] * cols[None, :]).to(target.dtype)
                piece = piece * mask + result[region] * (1.0 - mask)
            result[region] = piece
        return ({**samples_to, "samples": result},)


def _fade(length: int, feather: int, *, start: bool, end: bool, device: torch.device) -> torch.Tensor:
    """Weights along one side of a pasted piece: ``(t + 1) / feather`` over the first/last ``feather`` cells at the
    sides that lie inside the target (ramps that meet multiply)."""
    weights = torch.ones(length, dtype=torch.float32, device=device)
    for t in range(min(feather, length)):
        factor = (t + 1) / feather
        if start:
            weights[t] *= factor
        if end:
            weights[length - 1 - t] *= factor
    return weights


NODE_CLASS_MAPPINGS = {
    "EmptyLatentImage": EmptyLatentImage,
    "SetLatentNoiseMask": SetLatentNoiseMask,
    "LatentUpscale": LatentUpscale,
    "LatentUpscaleBy": LatentUpscaleBy,
    "RepeatLatentBatch": RepeatLatentBatch,
    "LatentFromBatch": LatentFromBatch,
    "LatentComposite": LatentComposite,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "EmptyLatentImage": "Empty Latent Image",
    "SetLatentNoiseMask": "Set Latent Noise Mask",
    "LatentUpscale": "Upscale Latent",
    "LatentUpscaleBy": "Upscale Latent By",
    "RepeatLatentBatch": "Repeat Latent Batch",
    "LatentFromBatch": "Latent From Batch",
    "LatentComposite": "Latent Composite",
}
