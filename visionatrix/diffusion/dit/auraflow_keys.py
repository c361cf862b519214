"""AuraFlow's own weight names (the MMDiT of fal's ``aura_flow_0.3.safetensors``, ComfyUI's layout) to diffusers'
``AuraFlowTransformer2DModel`` names, for any width and depth.

The rules, checked against diffusers' ``convert_auraflow_transformer_checkpoint_to_diffusers`` on the same names:

- top level: ``init_x_linear`` -> ``pos_embed.proj``, ``positional_encoding`` -> ``pos_embed.pos_embed``,
  ``cond_seq_linear`` -> ``context_embedder``, ``t_embedder.mlp.{0,2}`` -> ``time_step_proj.linear_{1,2}``,
  ``register_tokens`` kept, ``final_linear`` -> ``proj_out``, ``modF.1`` -> ``norm_out.linear`` with its two halves
  swapped (AuraFlow stores (shift, scale), diffusers reads (scale, shift));
- double layers (``double_layers.N`` -> ``joint_transformer_blocks.N``): ``attn.w2{q,k,v,o}`` are the image
  stream (``attn.to_q/k/v``, ``attn.to_out.0``), ``attn.w1{q,k,v,o}`` the text stream (``attn.add_{q,k,v}_proj``,
  ``attn.to_add_out``); ``modX.1``/``modC.1`` -> ``norm1.linear``/``norm1_context.linear``; ``mlpX``/``mlpC`` ->
  ``ff``/``ff_context`` with ``c_fc1``, ``c_fc2``, ``c_proj`` -> ``linear_1``, ``linear_2``, ``out_projection``;
- single layers (``single_layers.N`` -> ``single_transformer_blocks.N``): ``attn.w1{q,k,v,o}`` -> ``attn.to_q/k/v``,
  ``attn.to_out.0``; ``modCX.1`` -> ``norm1.linear``; ``mlp`` -> ``ff``.

Every tensor is the file's own (a view); only the swapped final modulation is new memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor

TOP_LEVEL = (
    # (diffusers name, AuraFlow name)
    ("register_tokens", "register_tokens"),
    ("pos_embed.pos_embed", "positional_encoding"),
    ("pos_embed.proj.weight", "init_x_linear.weight"),
    ("pos_embed.proj.bias", "init_x_linear.bias"),
    ("context_embedder.weight", "cond_seq_linear.weight"),
    ("time_step_proj.linear_1.weight", "t_embedder.mlp.0.weight"),
    ("time_step_proj.linear_1.bias", "t_embedder.mlp.0.bias"),
    ("time_step_proj.linear_2.weight", "t_embedder.mlp.2.weight"),
    ("time_step_proj.linear_2.bias", "t_embedder.mlp.2.bias"),
    ("proj_out.weight", "final_linear.weight"),
)
SWAPPED = ("norm_out.linear.weight", "modF.1.weight")
MLP = (("linear_1", "c_fc1"), ("linear_2", "c_fc2"), ("out_projection", "c_proj"))
DOUBLE_ATTENTION = (("to_q", "w2q"), ("to_k", "w2k"), ("to_v", "w2v"), ("to_out.0", "w2o"),
                    ("add_q_proj", "w1q"), ("add_k_proj", "w1k"), ("add_v_proj", "w1v"), ("to_add_out", "w1o"))
SINGLE_ATTENTION = (("to_q", "w1q"), ("to_k", "w1k"), ("to_v", "w1v"), ("to_out.0", "w1o"))


def key_map(depth: int, single_depth: int) -> dict[str, str]:
    """diffusers name -> AuraFlow name of every weight of a model with ``depth`` double and ``single_depth`` single
    layers (the swapped final modulation included)."""
    names = dict(TOP_LEVEL)
    names[SWAPPED[0]] = SWAPPED[1]
    for index in range(depth):
        ours, theirs = f"joint_transformer_blocks.{index}.", f"double_layers.{index}."
        names[ours + "norm1.linear.weight"] = theirs + "modX.1.weight"
        names[ours + "norm1_context.linear.weight"] = theirs + "modC.1.weight"
        for diffusers_part, aura_part in DOUBLE_ATTENTION:
            names[f"{ours}attn.{diffusers_part}.weight"] = f"{theirs}attn.{aura_part}.weight"
        for stream, aura_stream in (("ff", "mlpX"), ("ff_context", "mlpC")):
            for diffusers_part, aura_part in MLP:
                names[f"{ours}{stream}.{diffusers_part}.weight"] = f"{theirs}{aura_stream}.{aura_part}.weight"
    for index in range(single_depth):
        ours, theirs = f"single_transformer_blocks.{index}.", f"single_layers.{index}."
        names[ours + "norm1.linear.weight"] = theirs + "modCX.1.weight"
        for diffusers_part, aura_part in SINGLE_ATTENTION:
            names[f"{ours}attn.{diffusers_part}.weight"] = f"{theirs}attn.{aura_part}.weight"
        for diffusers_part, aura_part in MLP:
            names[f"{ours}ff.{diffusers_part}.weight"] = f"{theirs}mlp.{aura_part}.weight"
    return names


def apply_key_map(names: Mapping[str, str], weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The diffusers-named tensors of ``weights`` (AuraFlow names, every source present)."""
    import torch

    out: dict[str, Tensor] = {}
    for ours, theirs in names.items():
        value = weights[theirs]
        if ours == SWAPPED[0]:
            shift, scale = value.chunk(2, dim=0)
            value = torch.cat([scale, shift], dim=0)
        out[ours] = value
    return out
