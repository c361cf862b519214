"""One HunyuanDiT network call the way ComfyUI makes it (its ``HunYuanDiT.forward`` and ``model_base.HunyuanDiT``),
on diffusers' ``HunyuanDiT2DModel`` submodules.

``predict(module, x, timestep, conds, height=, width=)``: ``x`` is the network input ``[B, 4, H, W]`` (the latent
already scaled by ``c_in``), ``timestep`` the model sampling's timesteps ``[B]`` (fractional, 0..999), ``conds`` the
dict of :func:`visionatrix.diffusion.dit.hunyuan_dit_text.encode_hunyuan`, batched. It returns the v-prediction
``[B, 4, H, W]`` in float32, the learned-sigma channels dropped.

What the call computes besides the module's layers, as ComfyUI does:

- mT5 tokens are projected to the BERT width; the last ``text_len`` (77) BERT and last ``text_len_t5`` (256) mT5
  positions whose mask is 0 take the learned ``text_embedding_padding`` rows; longer sequences keep their other
  positions as they are (diffusers' own forward only takes exactly 77 + 256). Cross-attention has no mask.
- the pooler sees the first ``text_len_t5`` mT5 tokens (unprojected);
- rotary positions: the latent grid in patches ``(th, tw)`` is fitted into the 32 x 32 base grid (512 px) keeping its
  aspect, and positions run ``start + (stop - start) · i / n`` over the fitted region (numpy ``linspace(...,
  endpoint=False)``; diffusers' pipeline agrees for square grids only);
- v1.0/v1.1: image meta size ``[height, width, height, width, 0, 0]`` (ComfyUI passes the image size, by default the
  latent's x 8, as original and target size, no crop) and style 0;
- an input whose size is not a multiple of the patch is padded circularly and the output cropped back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from visionatrix.errors import InvalidInput

ROPE_BASE_PIXELS = 512
LATENT_SCALE = 8
ROPE_THETA = 10000.0
CONDS = ("encoder_hidden_states", "text_embedding_mask", "encoder_hidden_states_t5", "text_embedding_mask_t5")


def rotary_embedding(head_width: int, grid_height: int, grid_width: int, patch_size: int,
                     ) -> tuple[Tensor, Tensor]:
    """``(cos, sin)`` ``[th·tw, head_width]`` of the image tokens, as ComfyUI's HunyuanDiT computes them."""
    base = ROPE_BASE_PIXELS // LATENT_SCALE // patch_size
    if grid_height > grid_width:
        size = (base, round(base / grid_height * grid_width))
    else:
        size = (round(base / grid_width * grid_height), base)
    start = (round((base - size[0]) / 2.0), round((base - size[1]) / 2.0))  # round half to even, as numpy
    rows = start[0] + size[0] * torch.arange(grid_height, dtype=torch.float64) / grid_height
    cols = start[1] + size[1] * torch.arange(grid_width, dtype=torch.float64) / grid_width
    grid_rows, grid_cols = torch.meshgrid(rows.float(), cols.float(), indexing="ij")
    axis = head_width // 2  # half of each head for columns, half for rows (in that order)
    freqs = 1.0 / (ROPE_THETA ** (torch.arange(0, axis, 2)[: axis // 2].float() / axis))
    angles = [torch.outer(grid.reshape(-1), freqs) for grid in (grid_cols, grid_rows)]
    cos = torch.cat([a.cos().repeat_interleave(2, dim=1) for a in angles], dim=1)
    sin = torch.cat([a.sin().repeat_interleave(2, dim=1) for a in angles], dim=1)
    return cos, sin


@torch.no_grad()
def predict(module: Any, x: Tensor, timestep: Tensor, conds: Mapping[str, Tensor], *, height: int | None = None,
            width: int | None = None) -> Tensor:
    """The network's v-prediction for ``x`` at ``timestep`` (see the module docstring); ``height``/``width`` are the
    image's pixel size for v1.0/v1.1's size condition (default: the latent's x 8)."""
    missing = [name for name in CONDS if name not in conds]
    if missing:
        raise InvalidInput("conditioning", f"not HunyuanDiT conditioning: {', '.join(missing)} missing")
    config = module.config
    param = next(module.parameters())
    from visionatrix.diffusion.checkpoints import fp8

    dtype, device = fp8.compute_dtype_of(module), param.device  # weights may be stored in fp8
    batch, _, latent_h, latent_w = x.shape
    patch = int(config.patch_size)
    padded = _pad_to_patch(x.to(device=device, dtype=dtype), patch)
    text, text_mask, t5_text, t5_mask = (conds[name].to(device) for name in CONDS)
    text, t5_text = text.to(dtype), t5_text.to(dtype)
    text_len, text_len_t5 = int(config.text_len), int(config.text_len_t5)
    if t5_text.shape[1] < text_len_t5 or text.shape[1] < text_len:
        raise InvalidInput("conditioning", f"HunyuanDiT needs at least {text_len} CLIP and {text_len_t5} mT5 tokens "
                                           f"(got {text.shape[1]} and {t5_text.shape[1]}): encode with its tokenizers")
    timestep = timestep.to(device=device, dtype=torch.float32).reshape(-1).expand(batch)

    hidden = module.pos_embed(padded)
    meta = torch.tensor([[height or latent_h * LATENT_SCALE, width or latent_w * LATENT_SCALE,
                          height or latent_h * LATENT_SCALE, width or latent_w * LATENT_SCALE, 0, 0]],
                        dtype=torch.float32, device=device).repeat(batch, 1)
    style = torch.zeros(batch, dtype=torch.long, device=device)
    temb = module.time_extra_emb(timestep, t5_text[:, :text_len_t5], meta, style, hidden_dtype=dtype)
    projected = module.text_embedder(t5_text)
    padding = module.text_embedding_padding.to(dtype)
    text = _pad_masked(text, text_mask, padding[:text_len])
    projected = _pad_masked(projected, t5_mask, padding[text_len:])
    context = torch.cat([text, projected], dim=1)

    grid_h, grid_w = padded.shape[-2] // patch, padded.shape[-1] // patch
    rope = tuple(t.to(device) for t in rotary_embedding(module.inner_dim // module.num_heads, grid_h, grid_w, patch))
    hidden = _blocks(module, hidden, temb, context, rope)
    hidden = module.proj_out(module.norm_out(hidden, temb.to(torch.float32)))
    out = _unpatchify(hidden, grid_h, grid_w, patch, int(module.out_channels))
    return out[:, :int(config.in_channels), :latent_h, :latent_w].float()


def _pad_to_patch(x: Tensor, patch: int) -> Tensor:
    pad_h, pad_w = (-x.shape[-2]) % patch, (-x.shape[-1]) % patch
    if not (pad_h or pad_w):
        return x
    return torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), mode="circular")


def _pad_masked(states: Tensor, mask: Tensor, padding: Tensor) -> Tensor:
    """The last ``len(padding)`` positions whose mask is 0 replaced by the learned padding rows."""
    length = padding.shape[0]
    tail = torch.where(mask[:, -length:].bool().unsqueeze(2), states[:, -length:], padding)
    return torch.cat([states[:, :-length], tail], dim=1)


def _blocks(module: Any, hidden: Tensor, temb: Tensor, context: Tensor, rope: tuple[Tensor, ...]) -> Tensor:
    """The blocks with their long skips: block ``i > depth // 2`` takes the output of block ``depth - 1 - i``."""
    depth = int(module.config.num_layers)
    skips: list[Tensor] = []
    for layer, block in enumerate(module.blocks):
        skip = skips.pop() if layer > depth // 2 else None
        hidden = block(hidden, encoder_hidden_states=context, temb=temb, image_rotary_emb=rope, skip=skip)
        if layer < depth // 2 - 1:
            skips.append(hidden)
    return hidden


def _unpatchify(hidden: Tensor, grid_h: int, grid_w: int, patch: int, channels: int) -> Tensor:
    hidden = hidden.reshape(hidden.shape[0], grid_h, grid_w, patch, patch, channels)
    return torch.einsum("nhwpqc->nchpwq", hidden).reshape(hidden.shape[0], channels, grid_h * patch, grid_w * patch)
