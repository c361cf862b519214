"""Tiled upscaling: split an image into overlapping tiles, run each, blend the results back together.

Along each axis an image longer than ``tile`` is covered by the fewest tiles of at most ``tile`` pixels that overlap
their neighbours by at least ``overlap`` pixels; the tiles of an axis all have the same length and are spread
evenly from edge to edge (so 1024 px with 512 px tiles is three tiles of 363 px, not 512 + 512 + a 64 px sliver,
and not three full tiles that would run 50% more pixels through the model).
Overlaps are feathered: inside a tile, a pixel's weight rises linearly over the ``overlap * scale`` output pixels
next to an edge that borders another tile (edges on the image's border keep weight 1), and each output pixel is the
weighted mean of the tiles covering it. An image that fits in one tile is one plain call.

Each tile is padded to the model's size requirements (minimum size, multiple of, square) by reflection (and by
repeating the edge where reflection cannot reach far enough), and the padding is cropped off the output.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

TileFn = Callable[[torch.Tensor], torch.Tensor]


def tile_spans(size: int, tile: int, overlap: int) -> tuple[list[int], int]:
    """``(starts, length)`` of the tiles along an axis of ``size`` pixels (see the module docstring)."""
    if size <= tile:
        return [0], size
    overlap = min(overlap, tile // 2)
    count = -(-(size - overlap) // (tile - overlap))
    length = -(-(size + (count - 1) * overlap) // count)
    return [round(i * (size - length) / (count - 1)) for i in range(count)], length


def padding_for(height: int, width: int, minimum: int, multiple_of: int, square: bool) -> tuple[int, int]:
    """``(pad_bottom, pad_right)`` that bring a ``height`` x ``width`` tile up to the size requirements."""
    def up(size: int) -> int:
        size = max(size, minimum)
        return -(-size // multiple_of) * multiple_of

    padded_h, padded_w = up(height), up(width)
    if square:
        padded_h = padded_w = max(padded_h, padded_w)
    return padded_h - height, padded_w - width


def pad_bottom_right(image: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """Pad a BCHW tensor at the bottom and right: reflection as far as it reaches, then the edge repeated."""
    height, width = image.shape[-2], image.shape[-1]
    reflect_h, reflect_w = min(pad_h, height - 1), min(pad_w, width - 1)
    if reflect_h or reflect_w:
        image = F.pad(image, (0, reflect_w, 0, reflect_h), mode="reflect")
    if pad_h > reflect_h or pad_w > reflect_w:
        image = F.pad(image, (0, pad_w - reflect_w, 0, pad_h - reflect_h), mode="replicate")
    return image


def feather(length: int, ramp: int, *, start: bool, end: bool, device: torch.device) -> torch.Tensor:
    """Weights along one axis of an output tile: linear ramps of ``ramp`` pixels at the sides that overlap."""
    weights = torch.ones(length, dtype=torch.float32, device=device)
    if ramp <= 0:
        return weights
    steps = torch.arange(1, length + 1, dtype=torch.float32, device=device) / (ramp + 1)
    if start:
        weights = torch.minimum(weights, steps)
    if end:
        weights = torch.minimum(weights, steps.flip(0))
    return weights


def upscale_tiled(run: TileFn, image: torch.Tensor, *, scale: int, tile: int, overlap: int,
                  on_tile: Callable[[], None]) -> torch.Tensor:
    """Upscale one BCHW image (batch of 1) by ``scale`` with ``run`` called per tile; float32 result on the
    image's device. ``on_tile`` is called after every tile (progress, interrupt)."""
    height, width = image.shape[-2], image.shape[-1]
    (rows, tile_h), (cols, tile_w) = tile_spans(height, tile, overlap), tile_spans(width, tile, overlap)
    if len(rows) == 1 and len(cols) == 1:
        result = run(image).float()
        on_tile()
        return result
    out: torch.Tensor | None = None
    weight_sum = torch.zeros(1, 1, height * scale, width * scale, dtype=torch.float32, device=image.device)
    ramp = overlap * scale
    for top in rows:
        w_rows = feather(tile_h * scale, ramp, start=top > 0, end=top + tile_h < height, device=image.device)
        for left in cols:
            upscaled = run(image[..., top:top + tile_h, left:left + tile_w]).float()
            if out is None:
                out = torch.zeros(1, upscaled.shape[1], height * scale, width * scale, dtype=torch.float32,
                                  device=image.device)
            w_cols = feather(tile_w * scale, ramp, start=left > 0, end=left + tile_w < width, device=image.device)
            weights = (w_rows[:, None] * w_cols[None, :])[None, None]
            region = (..., slice(top * scale, (top + tile_h) * scale), slice(left * scale, (left + tile_w) * scale))
            out[region] += upscaled.to(image.device) * weights
            weight_sum[region] += weights
            on_tile()
    assert out is not None
    return out.div_(weight_sum)


def count_tiles(height: int, width: int, tile: int, overlap: int) -> int:
    return len(tile_spans(height, tile, overlap)[0]) * len(tile_spans(width, tile, overlap)[0])
