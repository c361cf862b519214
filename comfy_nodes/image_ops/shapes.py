"""Shape rules shared by the pack: what an IMAGE and a MASK look like, batch broadcasting, size limits.

IMAGE is ``[B, H, W, C]`` (C = 3, or 4 with alpha), MASK is ``[B, H, W]``; both float in 0..1.
"""

from __future__ import annotations

import torch

from visionatrix.errors import InvalidInput
from visionatrix.nodes import pixels

MAX_RESOLUTION = 16384
RGB_CHANNELS = 3


def require_image(input_name: str, image: torch.Tensor) -> torch.Tensor:
    """Return ``image`` when it is a ``[B, H, W, C]`` tensor with 1, 3 or 4 channels, else raise."""
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InvalidInput(input_name, f"expected an IMAGE shaped [B, H, W, C], got {shape}")
    return image


def require_mask(input_name: str, mask: torch.Tensor) -> torch.Tensor:
    """Return ``mask`` as ``[B, H, W]``; a single ``[H, W]`` mask becomes a batch of one."""
    if isinstance(mask, torch.Tensor) and mask.ndim == 2:
        return mask.unsqueeze(0)
    if not isinstance(mask, torch.Tensor) or mask.ndim != 3:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise InvalidInput(input_name, f"expected a MASK shaped [B, H, W], got {shape}")
    return mask


def common_batch_size(named: dict[str, torch.Tensor]) -> int:
    """The batch size the ``named`` tensors broadcast to (a batch of 1 fits any other).

    The first input whose batch disagrees with an earlier one is named in the error.
    """
    size = 1
    for name, tensor in named.items():
        count = tensor.shape[0]
        if count in (1, size):
            continue
        if size != 1:
            raise InvalidInput(name, f"batch of {count} does not match a batch of {size}")
        size = count
    return size


def match_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Drop an alpha channel, or add an opaque one, so ``image`` has ``channels`` channels."""
    have = image.shape[-1]
    if have > channels:
        return image[..., :channels]
    if have == 1 and channels >= RGB_CHANNELS:
        image, have = image.expand(*image.shape[:-1], RGB_CHANNELS), RGB_CHANNELS
    if have == channels:
        return image
    filler = torch.ones(*image.shape[:-1], channels - have, dtype=image.dtype, device=image.device)
    return torch.cat([image, filler], dim=-1)


def split_alpha(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Colour channels and the alpha channel (``None`` when there is none)."""
    if image.shape[-1] == 4:
        return image[..., :RGB_CHANNELS], image[..., RGB_CHANNELS:]
    return image, None


def join_alpha(color: torch.Tensor, alpha: torch.Tensor | None) -> torch.Tensor:
    """Inverse of :func:`split_alpha`."""
    return color if alpha is None else torch.cat([color, alpha], dim=-1)


def check_pixels(input_name: str, width: int, height: int, batch: int = 1) -> None:
    """Refuse an output of ``batch`` images of ``width`` * ``height`` that is empty or over the context's pixel
    limit (the whole batch counts; see :mod:`visionatrix.nodes.pixels`)."""
    pixels.check_pixels(input_name, width, height, batch)


def rgb_from_int(color: int, device: torch.device | str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A ``0xRRGGBB`` integer as a ``[3]`` tensor in 0..1."""
    channels = [(color >> shift) & 0xFF for shift in (16, 8, 0)]
    return torch.tensor(channels, dtype=dtype, device=device) / 255.0
