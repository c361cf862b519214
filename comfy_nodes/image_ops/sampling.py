"""Resampling of IMAGE and MASK tensors on their own device, with ComfyUI's ``upscale_method`` names.

``nearest-exact``, ``bilinear`` and ``bicubic`` follow PIL's filters (antialiased when shrinking), ``area``
averages the covered source pixels, and ``lanczos`` is a separable Lanczos-3 filter computed in torch with the
same support and weights as PIL's, so no tensor leaves its device. Results are clamped to 0..1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from visionatrix.errors import InvalidInput
from visionatrix.nodes import context

UPSCALE_METHODS = ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"]
LANCZOS_LOBES = 3
CHUNK_IMAGES = 16


def resample(image: torch.Tensor, width: int, height: int, method: str) -> torch.Tensor:
    """Resize an IMAGE ``[B, H, W, C]`` to ``width`` x ``height`` with ``method`` (one of UPSCALE_METHODS)."""
    if method not in UPSCALE_METHODS:
        raise InvalidInput("upscale_method", f"unknown method {method!r}; expected one of {UPSCALE_METHODS}")
    if image.shape[1] == height and image.shape[2] == width:
        return image
    batch = image.shape[0]
    chunks = []
    for start in range(0, batch, CHUNK_IMAGES):
        if batch > CHUNK_IMAGES:
            context.current().progress(start, batch)
        planes = image[start : start + CHUNK_IMAGES].movedim(-1, 1)
        chunks.append(_resample_planes(planes, width, height, method).movedim(1, -1))
    return torch.cat(chunks).clamp(0.0, 1.0)


def resample_mask(mask: torch.Tensor, width: int, height: int, method: str = "bilinear") -> torch.Tensor:
    """Resize a MASK ``[B, H, W]`` the same way as :func:`resample`."""
    return resample(mask.unsqueeze(-1), width, height, method).squeeze(-1)


def _resample_planes(planes: torch.Tensor, width: int, height: int, method: str) -> torch.Tensor:
    """Resize ``[N, C, H, W]`` planes."""
    size = (height, width)
    if method == "lanczos":
        return _lanczos(planes, width, height)
    if method == "nearest-exact":
        return F.interpolate(planes, size=size, mode="nearest-exact")
    if method == "area":
        return F.interpolate(planes, size=size, mode="area")
    return F.interpolate(planes, size=size, mode=method, align_corners=False, antialias=True)


def _lanczos(planes: torch.Tensor, width: int, height: int) -> torch.Tensor:
    rows = _resample_axis(planes, height, axis=2)
    return _resample_axis(rows, width, axis=3)


def _resample_axis(planes: torch.Tensor, out_size: int, axis: int) -> torch.Tensor:
    """Filter ``planes`` along ``axis`` to ``out_size`` samples with Lanczos weights."""
    in_size = planes.shape[axis]
    if in_size == out_size:
        return planes
    indices, weights = _lanczos_taps(in_size, out_size)
    indices, weights = indices.to(planes.device), weights.to(planes.device, planes.dtype)
    shape = [1] * planes.ndim
    shape[axis] = out_size
    result = planes.index_select(axis, indices[:, 0]) * weights[:, 0].reshape(shape)
    for tap in range(1, indices.shape[1]):
        result += planes.index_select(axis, indices[:, tap]) * weights[:, tap].reshape(shape)
    return result


def _lanczos_taps(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices ``[out, taps]`` and normalised weights ``[out, taps]`` of each output sample.

    The small coefficient tables are built in float64 on the CPU (not every device has float64) and then moved.
    """
    scale = in_size / out_size
    stretch = max(scale, 1.0)
    support = LANCZOS_LOBES * stretch
    taps = 2 * math.ceil(support) + 1
    centers = (torch.arange(out_size, dtype=torch.float64) + 0.5) * scale
    first = torch.floor(centers - support + 0.5).clamp(min=0)
    last = torch.floor(centers + support + 0.5).clamp(max=in_size)
    indices = first[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    weights = _lanczos_kernel((indices - centers[:, None] + 0.5) / stretch)
    weights = torch.where(indices < last[:, None], weights, torch.zeros_like(weights))
    weights = weights / weights.sum(dim=1, keepdim=True)
    return indices.clamp(max=in_size - 1).long(), weights


def _lanczos_kernel(x: torch.Tensor) -> torch.Tensor:
    inside = x.abs() < LANCZOS_LOBES
    return torch.where(inside, torch.sinc(x) * torch.sinc(x / LANCZOS_LOBES), torch.zeros_like(x))
