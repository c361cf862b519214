"""FreeU v2 (Si et al. 2023, "FreeU: Free Lunch in Diffusion U-Net") on a diffusers ``UNet2DConditionModel``.

In the decoder every resnet takes ``cat([h, skip])``: the backbone features coming up the U-Net and the skip
connection from the encoder. Where the backbone has ``4 x`` or ``2 x`` the model's base channel count (ComfyUI's
``model_channels``, diffusers' ``block_out_channels[0]``), FreeU v2 (as ComfyUI's ``FreeU_V2``):

- scales the first half of the backbone's channels by ``(b - 1) * m + 1``, where ``m`` is the per-pixel mean over
  the channels, min-max normalised per item (so the strongest features get ``b``, the weakest 1);
- scales the low frequencies of the skip (the 2 x 2 centre of its shifted 2-D Fourier transform, in float32) by
  ``s``.

``(b1, s1)`` go with ``4 x`` channels, ``(b2, s2)`` with ``2 x``. :func:`freeu_v2` installs forward pre-hooks on
those resnets for the duration of a ``with`` block and removes them after: the shared network is never changed.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

THRESHOLD = 1
"""Half the side of the low-frequency square scaled in the skip's spectrum."""


@contextlib.contextmanager
def freeu_v2(unet: Any, b1: float, b2: float, s1: float, s2: float) -> Iterator[Any]:
    """``unet`` with FreeU v2 applied to its decoder for the block (hooks removed on exit, even on errors)."""
    base = int(unet.config.block_out_channels[0])
    scales = {base * 4: (float(b1), float(s1)), base * 2: (float(b2), float(s2))}
    handles = []
    try:
        for resnet, backbone in decoder_resnets(unet):
            scale = scales.get(backbone)
            if scale is not None:
                hook = functools.partial(_before_resnet, backbone, *scale)
                handles.append(resnet.register_forward_pre_hook(hook, with_kwargs=True))
        yield unet
    finally:
        for handle in handles:
            handle.remove()


def decoder_resnets(unet: Any) -> list[tuple[Any, int]]:
    """Each resnet of the decoder with the channel count of the backbone part of its input (the rest is skip)."""
    found: list[tuple[Any, int]] = []
    previous = int(unet.config.block_out_channels[-1])  # the middle block's output
    for block in unet.up_blocks:
        resnets = list(block.resnets)
        if not resnets:
            continue
        width = int(resnets[0].out_channels)
        for index, resnet in enumerate(resnets):
            backbone = previous if index == 0 else width
            if int(resnet.in_channels) <= backbone:
                raise ValueError(f"decoder resnet with {resnet.in_channels} input channels has no skip after "
                                 f"{backbone} backbone channels: not a UNet2DConditionModel decoder")
            found.append((resnet, backbone))
        previous = int(resnets[-1].out_channels)
    return found


def scale_backbone(h: Tensor, b: float) -> Tensor:
    """The first half of ``h``'s channels times ``(b - 1) * m + 1`` (``m``: normalised channel mean per pixel)."""
    mean = h.mean(1, keepdim=True)
    flat = mean.flatten(1)
    low = flat.min(dim=1).values.view(-1, 1, 1, 1)
    high = flat.max(dim=1).values.view(-1, 1, 1, 1)
    normalised = (mean - low) / (high - low)
    half = h.shape[1] // 2
    return torch.cat([h[:, :half] * ((b - 1) * normalised + 1), h[:, half:]], dim=1)


def fourier_filter(x: Tensor, threshold: int, scale: float) -> Tensor:
    """``x`` with the ``2 threshold`` square of lowest frequencies of each channel scaled by ``scale``."""
    spectrum = torch.fft.fftshift(torch.fft.fftn(x.float(), dim=(-2, -1)), dim=(-2, -1))
    height, width = spectrum.shape[-2], spectrum.shape[-1]
    mask = torch.ones((height, width), dtype=torch.float32, device=x.device)
    row, col = height // 2, width // 2
    mask[row - threshold:row + threshold, col - threshold:col + threshold] = scale
    filtered = torch.fft.ifftn(torch.fft.ifftshift(spectrum * mask, dim=(-2, -1)), dim=(-2, -1)).real
    return filtered.to(x.dtype)


def _before_resnet(backbone: int, b: float, s: float, _module: Module, args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    if args:
        hidden, rest = args[0], args[1:]
    else:
        hidden, rest = kwargs.pop("input_tensor"), ()
    h, skip = hidden[:, :backbone], hidden[:, backbone:]
    hidden = torch.cat([scale_backbone(h, b), fourier_filter(skip, THRESHOLD, s)], dim=1)
    return (hidden, *rest), kwargs
