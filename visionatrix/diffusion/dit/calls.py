"""One network call of a transformer family, from the sampler's batch to the raw output in ComfyUI's convention.

Flux (``FluxTransformer2DModel``): the latent ``[B, C, H, W]`` (16 channels; Fill: 16 + 16 masked-image + 64 mask
channels) is padded to even sides (circularly, as ComfyUI pads patches), packed 2 x 2 into tokens of ``4C``
(channel-major ``c, row, column``, diffusers' and ComfyUI's order) with position ids ``(0, row, column)``; text tokens
have ids 0; Kontext reference latents are packed the same way and appended after the image tokens with ids
``(1, row + h offset, column + w offset)`` (the offsets place several references side by side, as ComfyUI does);
only the image tokens of the output are kept and unpacked. The timestep is sigma (the module multiplies it and
guidance by 1000 itself, as ComfyUI's Flux does). SD3 (``SD3Transformer2DModel``): the latent as is, the timestep
sigma x 1000, pooled text ``[B, 2048]``; ``skip_layers`` leaves joint blocks out (Skip Layer Guidance). AuraFlow,
PixArt and HunyuanDiT: their modules' ``predict`` (:func:`other_call`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from visionatrix.diffusion.checkpoints import fp8

PATCH = 2


def pack(latent: Tensor) -> Tensor:
    """``[B, C, H, W]`` (even sides) as tokens ``[B, H/2 * W/2, 4C]``."""
    b, c, h, w = latent.shape
    return latent.view(b, c, h // PATCH, PATCH, w // PATCH, PATCH).permute(0, 2, 4, 1, 3, 5).reshape(
        b, (h // PATCH) * (w // PATCH), c * PATCH * PATCH)


def unpack(tokens: Tensor, height: int, width: int) -> Tensor:
    """Tokens ``[B, H/2 * W/2, 4C]`` back as ``[B, C, H, W]``."""
    b, _, features = tokens.shape
    c = features // (PATCH * PATCH)
    return tokens.view(b, height // PATCH, width // PATCH, c, PATCH, PATCH).permute(0, 3, 1, 4, 2, 5).reshape(
        b, c, height, width)


def pad_to_patch(latent: Tensor) -> Tensor:
    pad_h, pad_w = (-latent.shape[-2]) % PATCH, (-latent.shape[-1]) % PATCH
    if not pad_h and not pad_w:
        return latent
    return F.pad(latent, (0, pad_w, 0, pad_h), mode="circular")


def image_ids(height: int, width: int, *, index: int = 0, h_offset: int = 0, w_offset: int = 0,
              device: Any = None) -> Tensor:
    """Position ids ``[H/2 * W/2, 3]`` of a packed latent of ``height`` x ``width`` latent cells."""
    rows, cols = height // PATCH, width // PATCH
    ids = torch.zeros(rows, cols, 3, device=device)
    ids[..., 0] = index
    ids[..., 1] = torch.arange(rows, device=device)[:, None] + h_offset
    ids[..., 2] = torch.arange(cols, device=device)[None, :] + w_offset
    return ids.reshape(rows * cols, 3)


def reference_tokens(refs: Sequence[Tensor], batch: int, device: Any, dtype: Any) -> tuple[Tensor, Tensor] | None:
    """Kontext reference latents (sampled space, ``[1 or B, 16, h, w]`` each) as tokens and ids: one index (1) for
    all, each placed beside the ones before it (below when that keeps the area squarer, else to the right)."""
    if not refs:
        return None
    tokens, ids = [], []
    height = width = 0
    for ref in refs:
        ref = pad_to_patch(ref.to(device=device, dtype=dtype))
        h_offset = w_offset = 0
        if ref.shape[-2] + height > ref.shape[-1] + width:
            w_offset = width
        else:
            h_offset = height
        height, width = max(height, ref.shape[-2] + h_offset), max(width, ref.shape[-1] + w_offset)
        packed = pack(ref)
        if packed.shape[0] != batch:
            packed = packed[:1].expand(batch, -1, -1)
        tokens.append(packed)
        ids.append(image_ids(ref.shape[-2], ref.shape[-1], index=1, h_offset=(h_offset + 1) // PATCH,
                             w_offset=(w_offset + 1) // PATCH, device=device))
    return torch.cat(tokens, dim=1), torch.cat(ids, dim=0)


def flux_call(module: Any, x_in: Tensor, timestep: Tensor, context: Tensor, added: Mapping[str, Tensor] | None,
              refs: Sequence[Tensor] = ()) -> Tensor:
    """The Flux transformer's velocity for ``x_in`` ``[B, C, H, W]`` at sigma ``timestep`` ``[B]`` (float32)."""
    parameter = next(module.parameters())
    cast = {"device": parameter.device, "dtype": fp8.compute_dtype_of(module)}
    height, width = x_in.shape[-2:]
    padded = pad_to_patch(x_in.to(**cast))
    tokens = pack(padded)
    ids = image_ids(padded.shape[-2], padded.shape[-1], device=cast["device"])
    count = tokens.shape[1]
    extra = reference_tokens(refs, tokens.shape[0], cast["device"], cast["dtype"])
    if extra is not None:
        tokens, ids = torch.cat([tokens, extra[0]], dim=1), torch.cat([ids, extra[1]], dim=0)
    added = added or {}
    guidance = added.get("guidance")
    config = module.config
    if config.guidance_embeds and guidance is None:
        raise ValueError("this Flux model takes a guidance value")
    out = module(
        hidden_states=tokens, encoder_hidden_states=context.to(**cast),
        pooled_projections=added["pooled"].to(**cast), timestep=timestep.to(**cast),
        img_ids=ids, txt_ids=torch.zeros(context.shape[1], 3, device=cast["device"]),
        guidance=guidance.reshape(-1).to(**cast) if config.guidance_embeds and guidance is not None else None,
        return_dict=False)[0]
    return unpack(out[:, :count].float(), padded.shape[-2], padded.shape[-1])[..., :height, :width]


def sd3_call(module: Any, x_in: Tensor, timestep: Tensor, context: Tensor, added: Mapping[str, Tensor] | None,
             skip_layers: Sequence[int] | None = None) -> Tensor:
    """The SD3 transformer's velocity for ``x_in`` at network ``timestep`` (sigma x 1000), float32."""
    parameter = next(module.parameters())
    cast = {"device": parameter.device, "dtype": fp8.compute_dtype_of(module)}
    out = module(hidden_states=x_in.to(**cast), encoder_hidden_states=context.to(**cast),
                 pooled_projections=(added or {})["pooled"].to(**cast), timestep=timestep.to(**cast),
                 skip_layers=list(skip_layers) if skip_layers else None, return_dict=False)[0]
    return out.float()


OTHER_FAMILIES = ("auraflow", "pixart", "hunyuan_dit")
"""Families whose network call is their module's ``predict`` (ComfyUI's convention already)."""


def other_call(family: str, module: Any, x_in: Tensor, timestep: Tensor, context: Tensor,
               added: Mapping[str, Tensor] | None) -> Tensor:
    """AuraFlow's velocity, PixArt's eps or HunyuanDiT's v for ``x_in`` at ComfyUI's ``timestep``."""
    if family == "auraflow":
        from visionatrix.diffusion.dit import auraflow

        return auraflow.predict(module, x_in, timestep, context)
    if family == "pixart":
        from visionatrix.diffusion.dit import pixart

        return pixart.predict(module, x_in, timestep, context)
    from visionatrix.diffusion.dit import hunyuan_dit_predict

    return hunyuan_dit_predict.predict(module, x_in, timestep, {"encoder_hidden_states": context, **(added or {})})
