"""Tencent's HunyuanDiT weight names (the ``pytorch_model_ema.pt`` layout ComfyUI's all-in-one
``hunyuan_dit_1.2.safetensors`` keeps under ``model.``) to diffusers' ``HunyuanDiT2DModel`` names, for any width.

The rules (the same renames diffusers' ``convert_hunyuandit_to_diffusers`` script makes for the real 1408-wide,
40-block model, written here for any size):

- ``attn1.Wqkv`` (fused self-attention q, k, v) splits by thirds into ``attn1.to_q``/``to_k``/``to_v``;
  ``attn2.kv_proj`` (cross-attention k, v) by halves into ``attn2.to_k``/``to_v``; ``q_proj`` becomes ``to_q``,
  ``out_proj`` ``to_out.0``, ``q_norm``/``k_norm`` ``norm_q``/``norm_k``;
- Tencent's ``norm2`` is the feed-forward norm and ``norm3`` the cross-attention norm: diffusers names them the other
  way round (``norm3``, ``norm2``); ``norm1`` becomes ``norm1.norm`` and ``default_modulation.1`` ``norm1.linear``;
- ``mlp.fc1``/``fc2`` become ``ff.net.0.proj``/``ff.net.2``; ``skip_norm``/``skip_linear`` keep their names;
- ``x_embedder.proj`` -> ``pos_embed.proj``, ``t_embedder.mlp.{0,2}`` -> ``time_extra_emb.timestep_embedder.
  linear_{1,2}``, ``extra_embedder.{0,2}`` -> ``time_extra_emb.extra_embedder.linear_{1,2}``, ``mlp_t5.{0,2}`` ->
  ``text_embedder.linear_{1,2}``, ``pooler.*`` -> ``time_extra_emb.pooler.*``, ``style_embedder`` (v1.0/1.1) ->
  ``time_extra_emb.style_embedder`` (its first row: the only style the model is given), ``final_layer.linear`` ->
  ``proj_out``; ``final_layer.adaLN_modulation.1`` -> ``norm_out.linear`` with its halves swapped (stored
  (shift, scale); diffusers' ``AdaLayerNormContinuous`` reads (scale, shift)).

Pieces are described with :class:`visionatrix.diffusion.dit.flux_keys.Piece` and cut with its ``apply_key_map``.
"""

from __future__ import annotations

from visionatrix.diffusion.dit.flux_keys import Piece

LINEAR = ("weight", "bias")
TOP_LEVEL_LINEARS = (
    # (diffusers module, Tencent module)
    ("pos_embed.proj", "x_embedder.proj"),
    ("time_extra_emb.timestep_embedder.linear_1", "t_embedder.mlp.0"),
    ("time_extra_emb.timestep_embedder.linear_2", "t_embedder.mlp.2"),
    ("time_extra_emb.extra_embedder.linear_1", "extra_embedder.0"),
    ("time_extra_emb.extra_embedder.linear_2", "extra_embedder.2"),
    ("text_embedder.linear_1", "mlp_t5.0"),
    ("text_embedder.linear_2", "mlp_t5.2"),
    ("time_extra_emb.pooler.q_proj", "pooler.q_proj"),
    ("time_extra_emb.pooler.k_proj", "pooler.k_proj"),
    ("time_extra_emb.pooler.v_proj", "pooler.v_proj"),
    ("time_extra_emb.pooler.c_proj", "pooler.c_proj"),
    ("proj_out", "final_layer.linear"),
)
TOP_LEVEL_TENSORS = (
    ("time_extra_emb.pooler.positional_embedding", "pooler.positional_embedding"),
    ("text_embedding_padding", "text_embedding_padding"),
)
BLOCK_LINEARS = (
    ("attn1.to_out.0", "attn1.out_proj"),
    ("attn1.norm_q", "attn1.q_norm"),
    ("attn1.norm_k", "attn1.k_norm"),
    ("attn2.to_q", "attn2.q_proj"),
    ("attn2.to_out.0", "attn2.out_proj"),
    ("attn2.norm_q", "attn2.q_norm"),
    ("attn2.norm_k", "attn2.k_norm"),
    ("norm1.norm", "norm1"),
    ("norm1.linear", "default_modulation.1"),
    ("norm2", "norm3"),
    ("norm3", "norm2"),
    ("ff.net.0.proj", "mlp.fc1"),
    ("ff.net.2", "mlp.fc2"),
)
SKIP_LINEARS = (("skip_norm", "skip_norm"), ("skip_linear", "skip_linear"))
STYLE_EMBEDDER = ("time_extra_emb.style_embedder.weight", "style_embedder.weight")


def tencent_key_map(*, hidden: int, depth: int, style: bool) -> dict[str, Piece]:
    """Every diffusers key of a HunyuanDiT of this width and depth and where its tensor lies in Tencent's layout
    (``style``: the v1.0/1.1 style embedder is there). Blocks after the middle one (``index > depth // 2``) carry
    the long skip connection."""
    pieces: dict[str, Piece] = {}

    def linear(target: str, source: str, start: int | None = None, stop: int | None = None,
               swap: bool = False) -> None:
        for suffix in LINEAR:
            pieces[f"{target}.{suffix}"] = Piece(f"{source}.{suffix}", start, stop, swap)

    for target, source in TOP_LEVEL_LINEARS:
        linear(target, source)
    for target, source in TOP_LEVEL_TENSORS:
        pieces[target] = Piece(source)
    linear("norm_out.linear", "final_layer.adaLN_modulation.1", swap=True)
    if style:
        pieces[STYLE_EMBEDDER[0]] = Piece(STYLE_EMBEDDER[1], 0, 1)
    for index in range(depth):
        block = f"blocks.{index}."
        for target, source in BLOCK_LINEARS + (SKIP_LINEARS if index > depth // 2 else ()):
            linear(block + target, block + source)
        for third, name in enumerate("qkv"):
            linear(f"{block}attn1.to_{name}", f"{block}attn1.Wqkv", third * hidden, (third + 1) * hidden)
        for half, name in enumerate("kv"):
            linear(f"{block}attn2.to_{name}", f"{block}attn2.kv_proj", half * hidden, (half + 1) * hidden)
    return pieces
