"""The extended canvas of InpaintCrop, read lazily: only the pixels a crop needs are ever gathered.

Around the picture the canvas holds the picture mirrored (half-sample, as far as the picture reaches, zeros
beyond) for the image and the blend mask, and ones for the inpaint mask (outside the picture counts as masked).
"""

from __future__ import annotations

import torch

from .geometry import Extension
from .resampling import Gather


def _axis(size: int, offset: int, mirror: bool, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For each canvas position along one axis: the picture index to read and whether it holds picture data."""
    canvas = torch.arange(size + 2 * offset, device=device) - offset
    reach = min(offset, size) if mirror else 0
    valid = (canvas >= -reach) & (canvas < size + reach)
    index = torch.where(canvas < 0, -canvas - 1, torch.where(canvas >= size, 2 * size - 1 - canvas, canvas))
    return index.clamp(0, size - 1), valid


def gatherer(planes: torch.Tensor, extension: Extension, *, mirror: bool, outside: float) -> Gather:
    """A ``gather(rows, cols)`` over the canvas of ``[B, C, H, W]`` picture planes: mirrored or not around the
    picture, ``outside`` where no picture pixel lands."""
    rows_map = _axis(extension.height, extension.top, mirror, planes.device)
    cols_map = _axis(extension.width, extension.left, mirror, planes.device)

    def gather(rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        rows, cols = rows.to(planes.device), cols.to(planes.device)
        row_index, row_valid = rows_map[0][rows], rows_map[1][rows]
        col_index, col_valid = cols_map[0][cols], cols_map[1][cols]
        block = planes.index_select(2, row_index).index_select(3, col_index)
        valid = row_valid[:, None] & col_valid[None, :]
        return torch.where(valid, block, torch.full_like(block, outside))

    return gather
