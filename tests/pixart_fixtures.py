"""Tiny random-weight PixArt transformers in PixArt's own single-file layout (and diffusers').

Each kind is a diffusers ``PixArtTransformer2DModel`` obeying the family's rule (heads of width 72: hidden 144 = 2
heads), two blocks, text width 64, learned sigma (8 output channels), every parameter perturbed, written under
PixArt's names by our own diffusers->PixArt reverse map (:func:`pixart_from_diffusers`: q/k/v fused into ``qkv``,
cross-attention k/v into ``kv_linear``), with the training-only ``y_embedder.y_embedding``:

- ``sigma``: no micro conditions, no ``pos_embed`` (positions from the image size, as the 1024 px Sigma files);
- ``alpha``: micro conditions (``csize_embedder``/``ar_embedder``) and a stored ``pos_embed`` buffer of a 128-latent
  model (so ``pe_interpolation`` 2), as PixArt-XL-2-1024-MS.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import torch

from tests.diffusion_fixtures import _perturbed

SEED = 2029
BASE: dict[str, Any] = {
    "num_attention_heads": 2, "attention_head_dim": 72, "in_channels": 4, "out_channels": 8, "num_layers": 2,
    "cross_attention_dim": 144, "patch_size": 2, "caption_channels": 64,
}
KINDS: dict[str, dict[str, Any]] = {
    "sigma": {**BASE, "sample_size": 128, "use_additional_conditions": False, "interpolation_scale": 2},
    "alpha": {**BASE, "sample_size": 128, "use_additional_conditions": True, "interpolation_scale": 2},
}
TOKEN_NUM = {"sigma": 300, "alpha": 120}
REAL_SIGMA: dict[str, Any] = {
    "num_attention_heads": 16, "attention_head_dim": 72, "in_channels": 4, "out_channels": 8, "num_layers": 28,
    "cross_attention_dim": 1152, "sample_size": 128, "patch_size": 2, "caption_channels": 4096,
    "use_additional_conditions": False, "interpolation_scale": 2,
}
"""PixArt-Sigma-XL-2-1024-MS's transformer config."""
TOP = {"pos_embed.proj": "x_embedder.proj", "proj_out": "final_layer.linear", "adaln_single.linear": "t_block.1",
       "adaln_single.emb.timestep_embedder.linear_1": "t_embedder.mlp.0",
       "adaln_single.emb.timestep_embedder.linear_2": "t_embedder.mlp.2",
       "adaln_single.emb.resolution_embedder.linear_1": "csize_embedder.mlp.0",
       "adaln_single.emb.resolution_embedder.linear_2": "csize_embedder.mlp.2",
       "adaln_single.emb.aspect_ratio_embedder.linear_1": "ar_embedder.mlp.0",
       "adaln_single.emb.aspect_ratio_embedder.linear_2": "ar_embedder.mlp.2",
       "caption_projection.linear_1": "y_embedder.y_proj.fc1", "caption_projection.linear_2": "y_embedder.y_proj.fc2"}
BLOCK = {"attn1.to_out.0": "attn.proj", "attn2.to_q": "cross_attn.q_linear", "attn2.to_out.0": "cross_attn.proj",
         "ff.net.0.proj": "mlp.fc1", "ff.net.2": "mlp.fc2"}
FUSED = {"attn.qkv": ("attn1.to_q", "attn1.to_k", "attn1.to_v"), "cross_attn.kv_linear": ("attn2.to_k", "attn2.to_v")}


def build_transformer(kind: str, *, seed: int = SEED) -> torch.nn.Module:
    """The tiny diffusers PixArt transformer of ``kind`` (one of :data:`KINDS`), perturbed, eval mode."""
    from diffusers import PixArtTransformer2DModel

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = PixArtTransformer2DModel(**KINDS[kind])
    return _perturbed(model, torch.Generator().manual_seed(seed)).eval()


def pixart_from_diffusers(weights: dict[str, torch.Tensor], *, token_num: int, caption_channels: int,
                          pos_embed: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """diffusers ``PixArtTransformer2DModel`` keys -> PixArt's keys (no prefix), plus ``y_embedder.y_embedding``
    and, when given, the ``pos_embed`` buffer."""
    out: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        module, _, param = key.rpartition(".")
        if key == "scale_shift_table":
            out["final_layer.scale_shift_table"] = value
        elif match := re.match(r"transformer_blocks\.(\d+)\.(.+)$", module if param != "scale_shift_table" else key):
            index, inner = match.groups()
            base = f"blocks.{index}."
            if inner == "scale_shift_table":
                out[base + inner] = value
            elif inner in BLOCK:
                out[f"{base}{BLOCK[inner]}.{param}"] = value
            else:
                fused, parts = next((name, parts) for name, parts in FUSED.items() if inner in parts)
                if inner == parts[0]:
                    prefix = f"transformer_blocks.{index}."
                    out[f"{base}{fused}.{param}"] = torch.cat([weights[f"{prefix}{part}.{param}"] for part in parts])
        else:
            out[f"{TOP[module]}.{param}"] = value
    generator = torch.Generator().manual_seed(SEED + 7)
    out["y_embedder.y_embedding"] = torch.randn(token_num, caption_channels, generator=generator)
    if pos_embed is not None:
        out["pos_embed"] = pos_embed
    return {key: value.detach().clone().contiguous() for key, value in out.items()}


@functools.cache
def cached_kind(kind: str) -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
    """(PixArt-layout tensors, the diffusers module they came from) of ``kind``, built once (read-only)."""
    model = build_transformer(kind)
    pos = model.pos_embed.pos_embed if kind == "alpha" else None
    state = pixart_from_diffusers(model.state_dict(), token_num=TOKEN_NUM[kind],
                                  caption_channels=BASE["caption_channels"], pos_embed=pos)
    return state, model


def inputs(config: Any, *, height: int = 64, width: int = 64, batch: int = 2, tokens: int = 7,
           seed: int = 0) -> dict[str, torch.Tensor]:
    """Forward arguments for a PixArt transformer of ``config``: latents, text tokens, discrete timesteps."""
    generator = torch.Generator().manual_seed(seed)
    return {"hidden_states": torch.randn(batch, config.in_channels, height, width, generator=generator),
            "encoder_hidden_states": torch.randn(batch, tokens, config.caption_channels, generator=generator),
            "timestep": torch.tensor([937.5, 120.25][:batch])}
