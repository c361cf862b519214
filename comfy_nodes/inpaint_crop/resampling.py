"""Resampling for InpaintCrop/InpaintStitch: the original's ``rescale_algorithm`` names, computed in torch.

``nearest``, ``bilinear``, ``bicubic``, ``lanczos``, ``box`` and ``hamming`` are Pillow's resampling filters
(support widened when shrinking, weights normalised per output sample; ``nearest`` takes the source pixel under
each output pixel's centre), computed in floating point on the tensor's device. ``bislerp`` is ComfyUI's
spherical bilinear upscale: along each axis (width first) the two neighbouring pixels are blended by slerping
their channel vectors and lerping their lengths.

Every function takes an output *window* (``start``/``stop`` per axis) of a resize to the full output size and a
``gather(rows, cols)`` that reads the source, so a crop of a large upscale costs only the crop.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from visionatrix.errors import InvalidInput

RESCALE_ALGORITHMS = ["nearest", "bilinear", "bicubic", "bislerp", "lanczos", "box", "hamming"]
BICUBIC_A = -0.5
LANCZOS_LOBES = 3

Gather = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``gather(rows, cols)`` -> ``[B, C, len(rows), len(cols)]`` planes of the source at those indices."""


def _box(x: torch.Tensor) -> torch.Tensor:
    return ((x > -0.5) & (x <= 0.5)).to(x.dtype)


def _triangle(x: torch.Tensor) -> torch.Tensor:
    return (1.0 - x.abs()).clamp(min=0.0)


def _hamming(x: torch.Tensor) -> torch.Tensor:
    inside = x.abs() < 1.0
    value = torch.sinc(x) * (0.54 + 0.46 * torch.cos(math.pi * x))
    return torch.where(inside, value, torch.zeros_like(x))


def _bicubic(x: torch.Tensor) -> torch.Tensor:
    a, x = BICUBIC_A, x.abs()
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return torch.where(x < 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x)))


def _lanczos(x: torch.Tensor) -> torch.Tensor:
    inside = x.abs() < LANCZOS_LOBES
    return torch.where(inside, torch.sinc(x) * torch.sinc(x / LANCZOS_LOBES), torch.zeros_like(x))


# name -> (kernel, support in source pixels at scale 1)
FILTERS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], float]] = {
    "box": (_box, 0.5),
    "bilinear": (_triangle, 1.0),
    "hamming": (_hamming, 1.0),
    "bicubic": (_bicubic, 2.0),
    "lanczos": (_lanczos, float(LANCZOS_LOBES)),
}


def check_algorithm(input_name: str, algorithm: str) -> str:
    if algorithm not in RESCALE_ALGORITHMS:
        raise InvalidInput(input_name, f"unknown algorithm {algorithm!r}; expected one of {RESCALE_ALGORITHMS}")
    return algorithm


def filter_taps(algorithm: str, in_size: int, out_size: int, start: int, stop: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices ``[n, taps]`` and weights ``[n, taps]`` (float64) of output samples ``start..stop-1`` of a
    resize from ``in_size`` to ``out_size`` samples with a Pillow filter, or ``nearest``."""
    scale = in_size / out_size
    centers = (torch.arange(start, stop, dtype=torch.float64) + 0.5) * scale
    if algorithm == "nearest":
        index = torch.floor(centers).clamp(max=in_size - 1).long()
        return index[:, None], torch.ones(stop - start, 1, dtype=torch.float64)
    kernel, support = FILTERS[algorithm]
    stretch = max(scale, 1.0)
    support *= stretch
    first = torch.trunc(centers - support + 0.5).clamp(min=0)
    last = torch.trunc(centers + support + 0.5).clamp(max=in_size)
    taps = max(1, int((last - first).max().item()))
    indices = first[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]
    weights = kernel((indices - centers[:, None] + 0.5) / stretch)
    weights = torch.where(indices < last[:, None], weights, torch.zeros_like(weights))
    total = weights.sum(dim=1, keepdim=True)
    weights = weights / torch.where(total == 0, torch.ones_like(total), total)
    return indices.clamp(max=in_size - 1).long(), weights


def slerp_pairs(in_size: int, out_size: int, start: int, stop: int
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For output samples ``start..stop-1``: the lower and upper source neighbours and the blend ratio, placed as
    ComfyUI's bislerp places them (bilinear half-pixel centres, clamped to the edges, in float32)."""
    positions = torch.arange(in_size, dtype=torch.float32).reshape(1, 1, 1, -1)
    positions = F.interpolate(positions, size=(1, out_size), mode="bilinear").flatten()[start:stop]
    low = positions.floor()
    ratio = positions - low
    low_index = low.long()
    return low_index, (low_index + 1).clamp(max=in_size - 1), ratio


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, dim: int) -> torch.Tensor:
    """Slerp the vectors of ``a`` towards ``b`` along ``dim`` by ``t`` (broadcast), lengths lerped; nearly equal
    directions keep ``a``, nearly opposite ones lerp, a zero vector has no direction (contributes 0)."""
    norm_a, norm_b = (a * a).sum(dim, keepdim=True).sqrt(), (b * b).sum(dim, keepdim=True).sqrt()
    unit_a = torch.where(norm_a == 0, torch.zeros_like(a), a / norm_a)
    unit_b = torch.where(norm_b == 0, torch.zeros_like(b), b / norm_b)
    cosine = (unit_a * unit_b).sum(dim=dim, keepdim=True)
    omega = torch.acos(cosine.clamp(-1.0, 1.0))
    sine = torch.sin(omega)
    mixed = torch.sin((1.0 - t) * omega) / sine * unit_a + torch.sin(t * omega) / sine * unit_b
    mixed = mixed * (norm_a * (1.0 - t) + norm_b * t)
    mixed = torch.where(cosine > 1 - 1e-5, a, mixed)
    return torch.where(cosine < 1e-5 - 1, a * (1.0 - t) + b * t, mixed)


def resample_window(gather: Gather, in_size: tuple[int, int], out_size: tuple[int, int],
                    window: tuple[int, int, int, int], algorithm: str) -> torch.Tensor:
    """Rows ``y0..y1-1`` and columns ``x0..x1-1`` (``window = (x0, x1, y0, y1)``) of the source resized from
    ``in_size`` to ``out_size`` (both ``(width, height)``) with ``algorithm``: ``[B, C, y1 - y0, x1 - x0]``."""
    (in_w, in_h), (out_w, out_h), (x0, x1, y0, y1) = in_size, out_size, window
    if algorithm == "bislerp":
        return _bislerp_window(gather, in_w, in_h, out_w, out_h, window)
    col_index, col_weight = filter_taps(algorithm, in_w, out_w, x0, x1)
    row_index, row_weight = filter_taps(algorithm, in_h, out_h, y0, y1)
    col_low, row_low = int(col_index.min()), int(row_index.min())
    block = gather(torch.arange(row_low, int(row_index.max()) + 1), torch.arange(col_low, int(col_index.max()) + 1))
    return _apply_taps(_apply_taps(block, col_index - col_low, col_weight, axis=3), row_index - row_low, row_weight,
                       axis=2)


def _apply_taps(planes: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, axis: int) -> torch.Tensor:
    if index.shape[1] == 1 and bool((weight == 1).all()):
        return planes.index_select(axis, index[:, 0].to(planes.device))
    index, weight = index.to(planes.device), weight.to(planes.device, torch.float32)
    shape = [1] * planes.ndim
    shape[axis] = index.shape[0]
    result = None
    source = planes.float()
    for tap in range(index.shape[1]):
        term = source.index_select(axis, index[:, tap]) * weight[:, tap].reshape(shape)
        result = term if result is None else result + term
    return result.to(planes.dtype)


def _bislerp_window(gather: Gather, in_w: int, in_h: int, out_w: int, out_h: int,
                    window: tuple[int, int, int, int]) -> torch.Tensor:
    x0, x1, y0, y1 = window
    col_low, col_high, col_ratio = slerp_pairs(in_w, out_w, x0, x1)
    row_low, row_high, row_ratio = slerp_pairs(in_h, out_h, y0, y1)
    first_col, first_row = int(col_low.min()), int(row_low.min())
    block = gather(torch.arange(first_row, int(row_high.max()) + 1), torch.arange(first_col, int(col_high.max()) + 1))
    dtype, device = block.dtype, block.device
    block = block.float()
    block = slerp(block.index_select(3, (col_low - first_col).to(device)),
                  block.index_select(3, (col_high - first_col).to(device)),
                  col_ratio.to(device).reshape(1, 1, 1, -1), dim=1)
    block = slerp(block.index_select(2, (row_low - first_row).to(device)),
                  block.index_select(2, (row_high - first_row).to(device)),
                  row_ratio.to(device).reshape(1, 1, -1, 1), dim=1)
    return block.to(dtype)


def resize(planes: torch.Tensor, width: int, height: int, algorithm: str) -> torch.Tensor:
    """Whole ``[B, C, H, W]`` planes resized to ``width`` x ``height``."""
    def gather(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        return planes.index_select(2, rows.to(planes.device)).index_select(3, cols.to(planes.device))

    return resample_window(gather, (planes.shape[3], planes.shape[2]), (width, height), (0, width, 0, height),
                           algorithm)
