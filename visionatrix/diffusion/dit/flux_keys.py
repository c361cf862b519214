"""Black Forest Labs' Flux.1 weight names (the ``flux1-*.safetensors`` layout) to diffusers'
``FluxTransformer2DModel`` names, for any width.

diffusers' own converter (``convert_flux_transformer_checkpoint_to_diffusers``) fixes the width at 3072 and the MLP
at 4 x 3072, so a narrower model (every test model) splits the fused single-block ``linear1`` wrongly. This map
reads the widths from the model's shapes instead. The rules, checked against that converter on real-size names:

- fused ``qkv`` projections split by thirds into ``to_q``/``to_k``/``to_v`` (text stream: ``add_q_proj``...);
- the single blocks' ``linear1`` splits into q, k, v (hidden width each) and ``proj_mlp`` (the rest);
- RMS norm ``scale`` tensors become ``weight``;
- the final AdaLN modulation is stored (shift, scale) but diffusers' ``AdaLayerNormContinuous`` reads
  (scale, shift): its two halves are swapped. The blocks' modulations keep their order.

Split pieces are views of the file's tensors (no copy); only the swapped final modulation is new memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


@dataclass(frozen=True)
class Piece:
    """One diffusers tensor: rows ``[start, stop)`` of the BFL tensor ``source`` (None: all of it); ``swap``
    exchanges the two halves of the rows."""

    source: str
    start: int | None = None
    stop: int | None = None
    swap: bool = False


LINEAR = ("weight", "bias")
TOP_LEVEL_LINEARS = (
    # (diffusers module, BFL module)
    ("time_text_embed.timestep_embedder.linear_1", "time_in.in_layer"),
    ("time_text_embed.timestep_embedder.linear_2", "time_in.out_layer"),
    ("time_text_embed.text_embedder.linear_1", "vector_in.in_layer"),
    ("time_text_embed.text_embedder.linear_2", "vector_in.out_layer"),
    ("context_embedder", "txt_in"),
    ("x_embedder", "img_in"),
    ("proj_out", "final_layer.linear"),
)
GUIDANCE_LINEARS = (
    ("time_text_embed.guidance_embedder.linear_1", "guidance_in.in_layer"),
    ("time_text_embed.guidance_embedder.linear_2", "guidance_in.out_layer"),
)
DOUBLE_BLOCK_LINEARS = (
    ("norm1.linear", "img_mod.lin"),
    ("norm1_context.linear", "txt_mod.lin"),
    ("attn.to_out.0", "img_attn.proj"),
    ("attn.to_add_out", "txt_attn.proj"),
    ("ff.net.0.proj", "img_mlp.0"),
    ("ff.net.2", "img_mlp.2"),
    ("ff_context.net.0.proj", "txt_mlp.0"),
    ("ff_context.net.2", "txt_mlp.2"),
)
DOUBLE_BLOCK_NORMS = (
    ("attn.norm_q.weight", "img_attn.norm.query_norm.scale"),
    ("attn.norm_k.weight", "img_attn.norm.key_norm.scale"),
    ("attn.norm_added_q.weight", "txt_attn.norm.query_norm.scale"),
    ("attn.norm_added_k.weight", "txt_attn.norm.key_norm.scale"),
)
DOUBLE_BLOCK_QKV = (
    # (BFL fused projection, diffusers q, k, v)
    ("img_attn.qkv", ("attn.to_q", "attn.to_k", "attn.to_v")),
    ("txt_attn.qkv", ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")),
)
SINGLE_BLOCK_LINEARS = (
    ("norm.linear", "modulation.lin"),
    ("proj_out", "linear2"),
)
SINGLE_BLOCK_NORMS = (
    ("attn.norm_q.weight", "norm.query_norm.scale"),
    ("attn.norm_k.weight", "norm.key_norm.scale"),
)
SINGLE_BLOCK_FUSED = ("attn.to_q", "attn.to_k", "attn.to_v")
"""The first three hidden-width row blocks of ``linear1``; the rows after them are ``proj_mlp``."""


def bfl_key_map(*, hidden: int, mlp_hidden: int, depth: int, single_depth: int, guidance: bool,
                ) -> dict[str, Piece]:
    """Every diffusers key of a Flux transformer of these sizes and where its tensor lies in the BFL file."""
    pieces: dict[str, Piece] = {}

    def linear(target: str, source: str, start: int | None = None, stop: int | None = None,
               swap: bool = False) -> None:
        for suffix in LINEAR:
            pieces[f"{target}.{suffix}"] = Piece(f"{source}.{suffix}", start, stop, swap)

    for target, source in TOP_LEVEL_LINEARS + (GUIDANCE_LINEARS if guidance else ()):
        linear(target, source)
    linear("norm_out.linear", "final_layer.adaLN_modulation.1", swap=True)
    for index in range(depth):
        block, source_block = f"transformer_blocks.{index}.", f"double_blocks.{index}."
        for target, source in DOUBLE_BLOCK_LINEARS:
            linear(block + target, source_block + source)
        for target, source in DOUBLE_BLOCK_NORMS:
            pieces[block + target] = Piece(source_block + source)
        for source, targets in DOUBLE_BLOCK_QKV:
            for third, target in enumerate(targets):
                linear(block + target, source_block + source, third * hidden, (third + 1) * hidden)
    for index in range(single_depth):
        block, source_block = f"single_transformer_blocks.{index}.", f"single_blocks.{index}."
        for target, source in SINGLE_BLOCK_LINEARS:
            linear(block + target, source_block + source)
        for target, source in SINGLE_BLOCK_NORMS:
            pieces[block + target] = Piece(source_block + source)
        for part, target in enumerate(SINGLE_BLOCK_FUSED):
            linear(block + target, source_block + "linear1", part * hidden, (part + 1) * hidden)
        linear(block + "proj_mlp", source_block + "linear1", 3 * hidden, 3 * hidden + mlp_hidden)
    return pieces


def apply_key_map(pieces: Mapping[str, Piece], weights: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The diffusers state dict cut from ``weights`` (BFL keys, prefix removed); every source must be there."""
    import torch

    converted: dict[str, Tensor] = {}
    for target, piece in pieces.items():
        tensor = weights[piece.source]
        if piece.start is not None or piece.stop is not None:
            tensor = tensor[piece.start:piece.stop]
        if piece.swap:
            half = tensor.shape[0] // 2
            tensor = torch.cat([tensor[half:], tensor[:half]])
        converted[target] = tensor
    return converted
