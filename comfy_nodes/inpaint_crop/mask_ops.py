"""Mask preparation for InpaintCrop: filling enclosed holes, growing then blurring, and the mirrored border.

Behaviour as the original node (scipy.ndimage there, torch here): ``grow_and_blur`` dilates with a square of
``ceil(sigma * 1.5 + 1)`` pixels (sigma = pixels / 4; an even square reaches one pixel further right/down than
left/up), lifts every touched pixel to 1, then applies a Gaussian of that sigma cut at 4 sigma with half-sample
mirrored edges. ``fill_holes`` closes gaps narrower than 5 pixels (the image edge counts as mask) and fills every
region of the background that the border cannot reach (4-connected).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CLOSING_SIZE = 5
GAUSSIAN_TRUNCATE = 4.0
BLUR_EPSILON = 0.001


def mirror_index(size: int, before: int, after: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Indices into an axis of ``size`` samples padded by ``before``/``after`` half-sample mirrored samples
    (``c b a | a b c | c b a``; pads longer than the axis keep mirroring)."""
    positions = torch.arange(-before, size + after, device=device)
    period = positions.remainder(2 * size)
    return torch.where(period >= size, 2 * size - 1 - period, period)


def _gaussian_1d(planes: torch.Tensor, sigma: float, axis: int) -> torch.Tensor:
    radius = int(GAUSSIAN_TRUNCATE * sigma + 0.5)
    if radius == 0:
        return planes
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    weights = (weights / weights.sum()).to(planes.device, planes.dtype)
    size = planes.shape[axis]
    padded = planes.index_select(axis, mirror_index(size, radius, radius, planes.device))
    windows = padded.unfold(axis, 2 * radius + 1, 1)  # [..., size, taps] along ``axis``
    return (windows * weights).sum(-1)


def gaussian_blur(mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """A MASK ``[B, H, W]`` blurred with a Gaussian of ``sigma`` pixels (truncated at 4 sigma, mirrored edges)."""
    return _gaussian_1d(_gaussian_1d(mask, sigma, axis=-1), sigma, axis=-2)


def dilate(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Grey dilation of a MASK ``[B, H, W]`` with a ``size`` x ``size`` square (outside the image adds nothing)."""
    if size <= 1:
        return mask
    low, high = (size - 1) // 2, size // 2
    padded = F.pad(mask.unsqueeze(1), (low, high, low, high), value=-math.inf)
    return F.max_pool2d(padded, kernel_size=size, stride=1).squeeze(1)


def grow_and_blur(mask: torch.Tensor, pixels: float) -> torch.Tensor:
    """Grow ``mask`` by about ``pixels * 3 / 8`` and blur it with sigma ``pixels / 4`` (no-op below 0.001)."""
    if pixels <= BLUR_EPSILON:
        return mask
    sigma = pixels / 4
    grown = (dilate(mask, math.ceil(sigma * 1.5 + 1)) * 255).clamp(0.0, 1.0)
    return gaussian_blur(grown, sigma).clamp(0.0, 1.0)


def fill_holes(mask: torch.Tensor) -> torch.Tensor:
    """Binarise ``mask`` (> 0), close gaps narrower than 5 pixels and fill enclosed holes; 0/1 floats."""
    binary = (mask > 0).to(torch.float32).unsqueeze(1)
    pad = CLOSING_SIZE // 2
    # Closing with the outside counted as mask: a dilation, then an erosion (a minimum), both padded with ones.
    dilated = F.max_pool2d(F.pad(binary, (pad, pad, pad, pad), value=1.0), CLOSING_SIZE, stride=1)
    closed = -F.max_pool2d(F.pad(-dilated, (pad, pad, pad, pad), value=-1.0), CLOSING_SIZE, stride=1)
    background = closed.squeeze(1) < 0.5
    holes = torch.stack([background_unreached(plane) for plane in background])
    return (~background | holes).to(mask.dtype)


def background_unreached(background: torch.Tensor) -> torch.Tensor:
    """The pixels of a boolean ``[H, W]`` background that no 4-connected path of background joins to the border."""
    reached = torch.zeros_like(background)
    reached[0], reached[-1], reached[:, 0], reached[:, -1] = background[0], background[-1], background[:, 0], \
        background[:, -1]
    while True:
        # Spread along whole runs of background, by rows then by columns: a few passes reach every pixel that a
        # path with that many turns reaches.
        spread = _spread_along_rows(background, reached)
        spread = _spread_along_rows(background.T, spread.T).T
        if torch.equal(spread, reached):
            return background & ~reached
        reached = spread


def _spread_along_rows(background: torch.Tensor, reached: torch.Tensor) -> torch.Tensor:
    """``reached`` grown to every background pixel of a row run (left-right contiguous background) it touches."""
    starts = background.clone()
    starts[:, 1:] &= ~background[:, :-1]
    run = starts.flatten().cumsum(0)
    hit = torch.zeros(int(run[-1]) + 1, dtype=torch.bool, device=background.device)
    hit[run[(reached & background).flatten()]] = True
    return background & hit[run].reshape(background.shape)
