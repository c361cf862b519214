"""Tiny random-weight Flux.1 transformers with the real architecture, written in Black Forest Labs' layout (the
``flux1-*.safetensors`` users download).

Each variant is a diffusers ``FluxTransformer2DModel`` built from a tiny config (hidden 256 = 2 heads of the
family's width 128, one double and one single block, text width 64, pooled width 32), every parameter perturbed so a
swapped or missing weight changes outputs, then written under BFL keys by our own diffusers->BFL reverse map
(:func:`diffusers_to_bfl`; no installed package ships one):

- ``dev``: ``guidance_in`` present, 64 input channels (dev and Kontext share these weights);
- ``schnell``: no ``guidance_in``;
- ``fill``: guidance, 384 input channels (64 latent + 64 masked-image latent + 256 mask), 64 output channels.

``write_flux_file(directory, variant, prefix=ALL_IN_ONE_PREFIX)`` writes the all-in-one layout
(``model.diffusion_model.*``). The reverse map is written independently of the loader's map
(``visionatrix.diffusion.dit.flux_keys``), so the round trip checks one against the other.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

SEED = 2026
ALL_IN_ONE_PREFIX = "model.diffusion_model."
TINY: dict[str, Any] = {
    "patch_size": 1, "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 128, "num_attention_heads": 2,
    "joint_attention_dim": 64, "pooled_projection_dim": 32, "axes_dims_rope": (16, 56, 56),
}
VARIANTS: dict[str, dict[str, Any]] = {
    "dev": {"guidance_embeds": True, "in_channels": 64, "out_channels": 64},
    "schnell": {"guidance_embeds": False, "in_channels": 64, "out_channels": 64},
    "fill": {"guidance_embeds": True, "in_channels": 384, "out_channels": 64},
}
REAL: dict[str, Any] = {
    "patch_size": 1, "in_channels": 64, "out_channels": None, "num_layers": 19, "num_single_layers": 38,
    "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 4096, "pooled_projection_dim": 768,
    "guidance_embeds": True, "axes_dims_rope": (16, 56, 56),
}
"""FLUX.1-dev's published transformer config (schnell: ``guidance_embeds`` False; Fill: ``in_channels`` 384)."""
IMAGE_SIDE = 4
"""Packed image tokens per side (a 64 x 64 px image: 8 x 8 latent, packed 2 x 2)."""
TEXT_TOKENS = 6

RENAMES = (
    # (diffusers name part, BFL name part), applied to whole names, first match wins
    ("time_text_embed.timestep_embedder.linear_1.", "time_in.in_layer."),
    ("time_text_embed.timestep_embedder.linear_2.", "time_in.out_layer."),
    ("time_text_embed.text_embedder.linear_1.", "vector_in.in_layer."),
    ("time_text_embed.text_embedder.linear_2.", "vector_in.out_layer."),
    ("time_text_embed.guidance_embedder.linear_1.", "guidance_in.in_layer."),
    ("time_text_embed.guidance_embedder.linear_2.", "guidance_in.out_layer."),
    ("context_embedder.", "txt_in."),
    ("x_embedder.", "img_in."),
    ("norm_out.linear.", "final_layer.adaLN_modulation.1."),
    ("proj_out.", "final_layer.linear."),
)
DOUBLE_RENAMES = {
    "norm1.linear": "img_mod.lin", "norm1_context.linear": "txt_mod.lin",
    "attn.to_out.0": "img_attn.proj", "attn.to_add_out": "txt_attn.proj",
    "ff.net.0.proj": "img_mlp.0", "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0", "ff_context.net.2": "txt_mlp.2",
    "attn.norm_q": "img_attn.norm.query_norm", "attn.norm_k": "img_attn.norm.key_norm",
    "attn.norm_added_q": "txt_attn.norm.query_norm", "attn.norm_added_k": "txt_attn.norm.key_norm",
}
DOUBLE_FUSED = {"img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
                "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")}
SINGLE_RENAMES = {"norm.linear": "modulation.lin", "proj_out": "linear2",
                  "attn.norm_q": "norm.query_norm", "attn.norm_k": "norm.key_norm"}
SINGLE_FUSED = {"linear1": ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp")}
BLOCK = re.compile(r"(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)\.(weight|bias)$")


def flux_config(variant: str) -> dict[str, Any]:
    """The tiny ``FluxTransformer2DModel`` config of ``variant``."""
    return {**TINY, **VARIANTS[variant]}


@functools.cache
def flux_model(variant: str) -> Any:
    """The tiny diffusers Flux transformer of ``variant``, every parameter perturbed, float32, eval mode."""
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(SEED)
    model = FluxTransformer2DModel(**flux_config(variant))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model.eval()


def diffusers_to_bfl(state_dict: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """BFL-named tensors (under ``prefix``) of a diffusers Flux state dict: fused q/k/v (and the single blocks' MLP
    input), ``scale`` norms, the final modulation's halves stored (shift, scale)."""
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, tuple[tuple[str, ...], dict[str, torch.Tensor]]] = {}
    for key, tensor in state_dict.items():
        match = BLOCK.match(key)
        if match is None:
            name = next(bfl + key[len(ours):] for ours, bfl in RENAMES if key.startswith(ours))
            if name.startswith("final_layer.adaLN_modulation"):
                shift_scale = tensor.chunk(2)
                tensor = torch.cat([shift_scale[1], shift_scale[0]])
            out[name] = tensor
            continue
        kind, index, module, suffix = match.groups()
        bfl_block = f"double_blocks.{index}." if kind == "transformer_blocks" else f"single_blocks.{index}."
        renames, fusions = (DOUBLE_RENAMES, DOUBLE_FUSED) if kind == "transformer_blocks" else (
            SINGLE_RENAMES, SINGLE_FUSED)
        if module in renames:
            is_norm = module.startswith("attn.norm_")
            out[bfl_block + renames[module] + "." + ("scale" if is_norm else suffix)] = tensor
            continue
        fused_name, order = next((name, parts) for name, parts in fusions.items() if module in parts)
        fused.setdefault(f"{bfl_block}{fused_name}.{suffix}", (order, {}))[1][module] = tensor
    for name, (order, parts) in fused.items():
        out[name] = torch.cat([parts[part] for part in order])
    return {prefix + key: value.detach().clone().contiguous() for key, value in out.items()}


def write_flux_file(directory: Path, variant: str, prefix: str = "") -> Path:
    """The tiny ``variant`` saved as a BFL-layout safetensors file (``prefix``: the all-in-one layout)."""
    path = directory / f"flux1-{variant}{'-aio' if prefix else ''}.safetensors"
    save_file(diffusers_to_bfl(flux_model(variant).state_dict(), prefix), str(path))
    return path


def flux_inputs(config: dict[str, Any], seed: int = SEED) -> dict[str, torch.Tensor]:
    """Forward arguments for a Flux transformer of ``config``: packed image tokens with their (index, row, column)
    ids, text tokens with zero ids, pooled text, a timestep in [0, 1] and, when the model has it, guidance."""
    generator = torch.Generator().manual_seed(seed)
    rows, columns = torch.meshgrid(torch.arange(IMAGE_SIDE), torch.arange(IMAGE_SIDE), indexing="ij")
    img_ids = torch.stack([torch.zeros_like(rows), rows, columns], dim=-1).reshape(-1, 3).float()
    inputs = {
        "hidden_states": torch.randn(1, IMAGE_SIDE * IMAGE_SIDE, config["in_channels"], generator=generator),
        "encoder_hidden_states": torch.randn(1, TEXT_TOKENS, config["joint_attention_dim"], generator=generator),
        "pooled_projections": torch.randn(1, config["pooled_projection_dim"], generator=generator),
        "timestep": torch.tensor([0.7]),
        "img_ids": img_ids,
        "txt_ids": torch.zeros(TEXT_TOKENS, 3),
    }
    if config["guidance_embeds"]:
        inputs["guidance"] = torch.tensor([3.5])
    return inputs
