"""PixArt-Sigma and PixArt-Alpha transformers from their files, as diffusers' ``PixArtTransformer2DModel``, called and
prompted the way ComfyUI does.

Files (``{key: shape}`` only, alone or under ``model.diffusion_model.``):

- PixArt's own layout (``900mPixartSigma_base.safetensors``, ``PixArt-Sigma-XL-2-1024-MS.pth`` converted):
  ``x_embedder.proj``, ``t_embedder.mlp``, ``t_block.1``, ``y_embedder.y_proj.fc1/fc2`` (plus the training-only
  ``y_embedder.y_embedding``, ``[token_num, 4096]``), ``blocks.N.attn.qkv/proj``, ``blocks.N.cross_attn.q_linear/
  kv_linear/proj``, ``blocks.N.mlp.fc1/fc2``, ``blocks.N.scale_shift_table``, ``final_layer.linear``,
  ``final_layer.scale_shift_table``, PixArt-Alpha's ``csize_embedder``/``ar_embedder``, maybe a ``pos_embed`` buffer;
- diffusers' layout (``pos_embed.proj``, ``adaln_single``, ``caption_projection``, ``transformer_blocks.N``).

Config from shapes and the family's rules (ComfyUI fixes 16 heads of 1152; here heads of width 72 for any width):
hidden width and patch from the patch projection, depth counted, text width from the caption projection, out
channels 8 = learned sigma (the output's first ``in_channels`` are eps). ComfyUI's rule for the variant: micro
conditions (``ar_embedder``) mean PixArt-Alpha (SD1.5 latents), none PixArt-Sigma (SDXL latents). Position
interpolation: from a stored ``pos_embed`` (``[1, n², hidden]``: sample size ``n · patch``, interpolation
``sample // 64``), else per call from the image as ComfyUI: ``round(((H + W) // 2) / 64)``. The positions' base
grid is ``round(c / 64) · 64 / patch`` with ``c = (H + W) // 2`` (the latent's mean side).

Sampling: eps prediction on a discrete 1000-step schedule with linear betas 0.0001..0.02 (ComfyUI's
``sqrt_linear``: ``betas = linspace(start, end)``); the network takes ComfyUI's timestep (0..999) as is.
Text: T5-XXL (:mod:`visionatrix.diffusion.dit.t5`) with ComfyUI's PixArt tokenizer: per-word tokens, one end token,
no padding (``MIN_LENGTH`` 1), no attention mask; a weighted prompt interpolates from an all-padding sequence.
"""

from __future__ import annotations

import contextlib
import enum
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from visionatrix.diffusion.checkpoints import weights_fit
from visionatrix.diffusion.checkpoints.detect import prefix_summary
from visionatrix.diffusion.dit import t5
from visionatrix.errors import ModelFileError

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

Shapes = Mapping[str, Sequence[int]]

PREFIXES = ("model.diffusion_model.", "")
HEAD_WIDTH = 72
DEFAULT_SAMPLE_SIZE = 128
"""Latent side of the 1024 px models, when the file does not tell (no ``pos_embed``)."""
BETA_START, BETA_END, TIMESTEPS = 0.0001, 0.02, 1000
"""ComfyUI's PixArt ``sampling_settings``: ``sqrt_linear`` betas (linear in beta) over 1000 steps."""
MIN_LENGTH = 1
"""ComfyUI pads PixArt's T5 tokens to 1 (no padding): the prompt's tokens and the end token only."""
LATENT_SCALE = {"sigma": 0.13025, "alpha": 0.18215}
"""Latent formats: Sigma uses SDXL's VAE scaling, Alpha SD1.5's."""
BLOCK_LINEARS = (("attn1.to_out.0", "attn.proj"), ("attn2.to_q", "cross_attn.q_linear"),
                 ("attn2.to_out.0", "cross_attn.proj"), ("ff.net.0.proj", "mlp.fc1"), ("ff.net.2", "mlp.fc2"))
"""A block's unfused linears: (diffusers name, PixArt name)."""
IGNORED = ("y_embedder.y_embedding", "pos_embed", "pos_embed.pos_embed")
"""Training-only caption embedding and the fixed sin-cos position buffer: not weights of the module."""


class PixArtLayout(enum.StrEnum):
    ORIGINAL = "original"
    DIFFUSERS = "diffusers"


MARKERS = {
    PixArtLayout.ORIGINAL: ("x_embedder.proj.weight", "t_block.1.weight", "blocks.0.attn.qkv.weight"),
    PixArtLayout.DIFFUSERS: ("pos_embed.proj.weight", "adaln_single.linear.weight",
                             "transformer_blocks.0.attn1.to_q.weight"),
}
SIZE_KEYS = {  # patch projection, block pattern, output, caption input, micro-condition marker
    PixArtLayout.ORIGINAL: ("x_embedder.proj.weight", r"blocks\.(\d+)\.", "final_layer.linear.weight",
                            "y_embedder.y_proj.fc1.weight", "ar_embedder.mlp.0.weight"),
    PixArtLayout.DIFFUSERS: ("pos_embed.proj.weight", r"transformer_blocks\.(\d+)\.", "proj_out.weight",
                             "caption_projection.linear_1.weight",
                             "adaln_single.emb.aspect_ratio_embedder.linear_1.weight"),
}


@dataclass(frozen=True)
class PixArtInfo:
    """What a PixArt file holds: layout, prefix, variant and sizes."""

    layout: PixArtLayout
    prefix: str
    variant: str
    """``sigma`` or ``alpha`` (ComfyUI's rule: micro conditions mean Alpha)."""
    hidden: int
    heads: int
    depth: int
    patch_size: int
    in_channels: int
    out_channels: int
    context_dim: int
    """Text token width (T5-XXL: 4096)."""
    micro_conditions: bool
    sample_size: int
    pe_interpolation: float | None
    """Fixed when the file stores ``pos_embed``; None: from each image's size."""
    token_num: int | None = None
    """Caption length it was trained on (``y_embedding``: Sigma 300, Alpha 120); informative only."""

    @property
    def learned_sigma(self) -> bool:
        return self.out_channels == 2 * self.in_channels


def detect_pixart(shapes: Shapes, path: object = "<state dict>") -> PixArtInfo:
    """The layout, variant and sizes of the PixArt transformer whose tensors have ``shapes``;
    :class:`ModelFileError` naming the key prefixes found when it is not one, or the size that does not fit."""
    found = next(((layout, prefix) for prefix in PREFIXES for layout, markers in MARKERS.items()
                  if all(prefix + key in shapes for key in markers)), None)
    if found is None:
        raise ModelFileError(path, "not a PixArt transformer: no x_embedder/t_block/blocks (PixArt layout, alone or "
                                   "under model.diffusion_model.) nor pos_embed/adaln_single/transformer_blocks "
                                   f"(diffusers layout); found {prefix_summary(shapes)}")
    layout, prefix = found
    inner = {key[len(prefix):]: tuple(int(n) for n in shape) for key, shape in shapes.items() if key.startswith(prefix)}

    def shape(key: str) -> tuple[int, ...]:
        if key not in inner:
            raise ModelFileError(path, f"PixArt weight {prefix + key!r} is missing")
        return inner[key]

    patch_key, block_pattern, output_key, caption_key, micro_key = SIZE_KEYS[layout]
    hidden, in_channels, patch, _ = shape(patch_key)
    if hidden % HEAD_WIDTH:
        raise ModelFileError(path, f"PixArt hidden width {hidden} is not a multiple of the head width {HEAD_WIDTH}")
    out_values = shape(output_key)[0]
    if out_values % (patch * patch):
        raise ModelFileError(path, f"PixArt output of {out_values} values does not fit {patch} x {patch} patches")
    pattern = re.compile(block_pattern)
    blocks = {int(m.group(1)) for key in inner if (m := pattern.match(key))}
    if not blocks or len(blocks) != max(blocks) + 1:
        raise ModelFileError(path, f"PixArt blocks are missing (found {sorted(blocks)[:5]})")
    micro = micro_key in inner
    sample_size, pe_interpolation = DEFAULT_SAMPLE_SIZE, None
    if layout is PixArtLayout.ORIGINAL and "pos_embed" in inner:
        side = math.isqrt(inner["pos_embed"][1])
        sample_size = side * patch
        pe_interpolation = float(max(sample_size // 64, 1))
    token = inner.get("y_embedder.y_embedding")
    return PixArtInfo(
        layout=layout, prefix=prefix, variant="alpha" if micro else "sigma", hidden=hidden,
        heads=hidden // HEAD_WIDTH, depth=len(blocks), patch_size=patch, in_channels=in_channels,
        out_channels=out_values // (patch * patch), context_dim=shape(caption_key)[1], micro_conditions=micro,
        sample_size=sample_size, pe_interpolation=pe_interpolation, token_num=token[0] if token else None)


def pixart_diffusers_config(info: PixArtInfo) -> dict[str, Any]:
    """The ``PixArtTransformer2DModel`` config of the detected model."""
    return {
        "num_attention_heads": info.heads, "attention_head_dim": HEAD_WIDTH, "in_channels": info.in_channels,
        "out_channels": info.out_channels, "num_layers": info.depth, "cross_attention_dim": info.hidden,
        "sample_size": info.sample_size, "patch_size": info.patch_size, "caption_channels": info.context_dim,
        "use_additional_conditions": info.micro_conditions,
        "interpolation_scale": info.pe_interpolation or max(info.sample_size // 64, 1),
    }


def original_key_map(depth: int, micro_conditions: bool) -> dict[str, tuple[str, int, int]]:
    """diffusers name -> (PixArt name, part, parts): the tensor is the ``part``-th of ``parts`` equal row blocks of
    the PixArt tensor (fused ``qkv``: 3 parts; ``kv_linear``: 2)."""
    linear = ("weight", "bias")
    names: dict[str, tuple[str, int, int]] = {
        "scale_shift_table": ("final_layer.scale_shift_table", 0, 1)}
    modules = [("pos_embed.proj", "x_embedder.proj"), ("proj_out", "final_layer.linear"),
               ("adaln_single.linear", "t_block.1"),
               ("adaln_single.emb.timestep_embedder.linear_1", "t_embedder.mlp.0"),
               ("adaln_single.emb.timestep_embedder.linear_2", "t_embedder.mlp.2"),
               ("caption_projection.linear_1", "y_embedder.y_proj.fc1"),
               ("caption_projection.linear_2", "y_embedder.y_proj.fc2")]
    if micro_conditions:
        for ours, theirs in (("resolution", "csize"), ("aspect_ratio", "ar")):
            modules += [(f"adaln_single.emb.{ours}_embedder.linear_{i + 1}", f"{theirs}_embedder.mlp.{2 * i}")
                        for i in range(2)]
    for index in range(depth):
        ours, theirs = f"transformer_blocks.{index}.", f"blocks.{index}."
        names[ours + "scale_shift_table"] = (theirs + "scale_shift_table", 0, 1)
        modules += [(ours + diffusers_name, theirs + pixart_name) for diffusers_name, pixart_name in BLOCK_LINEARS]
        for param in linear:
            for part, name in enumerate(("to_q", "to_k", "to_v")):
                names[f"{ours}attn1.{name}.{param}"] = (f"{theirs}attn.qkv.{param}", part, 3)
            for part, name in enumerate(("to_k", "to_v")):
                names[f"{ours}attn2.{name}.{param}"] = (f"{theirs}cross_attn.kv_linear.{param}", part, 2)
    for ours, theirs in modules:
        for param in linear:
            names[f"{ours}.{param}"] = (f"{theirs}.{param}", 0, 1)
    return names


def convert_original_weights(weights: Mapping[str, Tensor], info: PixArtInfo, path: object = "<state dict>",
                             ) -> dict[str, Tensor]:
    """diffusers-named tensors from PixArt-named ``weights`` (prefix removed); every PixArt weight but the
    :data:`IGNORED` ones must be used: a missing or unknown one is a :class:`ModelFileError` naming a few."""
    names = original_key_map(info.depth, info.micro_conditions)
    sources = {source for source, _, _ in names.values()}
    present = {key for key in weights if key not in IGNORED}
    missing, unexpected = sorted(sources - present), sorted(present - sources)
    problems = [f"{label} {len(keys)} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
                for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
    if problems:
        raise ModelFileError(path, "PixArt transformer weights do not fit: " + "; ".join(problems))
    return {ours: weights[source].chunk(parts, dim=0)[part] if parts > 1 else weights[source]
            for ours, (source, part, parts) in names.items()}


def build_pixart(state_dict: Mapping[str, Tensor], info: PixArtInfo, path: object = "<state dict>") -> Module:
    """The ``PixArtTransformer2DModel`` of the file whose tensors are ``state_dict`` (either layout, prefixed or
    not), on the CPU in the file's dtype, in eval mode; its config also records ``pe_interpolation`` for
    :func:`predict`."""
    from diffusers import PixArtTransformer2DModel
    from diffusers.models.embeddings import get_2d_sincos_pos_embed

    weights = {key[len(info.prefix):]: value for key, value in state_dict.items() if key.startswith(info.prefix)}
    if info.layout is PixArtLayout.ORIGINAL:
        weights = convert_original_weights(weights, info, path)
    else:
        weights = {key: value for key, value in weights.items() if key not in IGNORED}
    config = pixart_diffusers_config(info)
    with torch.device("meta"):
        model: Any = PixArtTransformer2DModel(**config)
    grid = info.sample_size // info.patch_size
    model.pos_embed.pos_embed = get_2d_sincos_pos_embed(
        info.hidden, grid, base_size=grid, interpolation_scale=config["interpolation_scale"], output_type="pt",
    ).float().unsqueeze(0)
    weights_fit.load_strictly(model, weights, path, "PixArt transformer", assign=True)
    model.register_to_config(pe_interpolation=info.pe_interpolation)
    return model.eval()


def predict(module: Any, x: Tensor, timestep: Tensor, context: Tensor, *, context_mask: Tensor | None = None,
            ) -> Tensor:
    """eps ``[B, in_channels, H, W]`` (float32; learned-sigma channels dropped) of PixArt's ``module`` for the network
    input ``x`` at ComfyUI's discrete ``timestep`` ``[B]`` with T5 tokens ``context`` ``[B, T, width]``; positions
    and (Alpha) micro conditions ``[H·8, W·8]`` / ``H/W`` as ComfyUI sets them. ``context_mask`` (``[B, T]``,
    1 = keep) masks text tokens in the cross attention (ComfyUI passes none)."""
    from visionatrix.diffusion.checkpoints import fp8

    dtype = fp8.compute_dtype_of(module)  # not the first parameter's: weights may be stored in fp8
    batch, _, height, width = x.shape
    mean_side = (height + width) // 2
    steps = max(round(mean_side / 64), 1)  # ComfyUI divides by zero below 256 px; clamped here
    pe_interpolation = module.config.get("pe_interpolation") or float(steps)
    added = None
    if module.use_additional_conditions:
        added = {"resolution": torch.tensor([[height * 8.0, width * 8.0]], device=x.device).repeat(batch, 1),
                 "aspect_ratio": torch.tensor([[height / width]], device=x.device).repeat(batch, 1)}
    with _positions(module.pos_embed, (steps * 64) // module.config.patch_size, pe_interpolation):
        out = module(x.to(dtype), encoder_hidden_states=context.to(dtype), timestep=timestep.to(x.device),
                     added_cond_kwargs=added, encoder_attention_mask=context_mask).sample
    return out[:, :module.config.in_channels].float()


@contextlib.contextmanager
def _positions(patch_embed: Any, base_size: int, interpolation: float) -> Iterator[None]:
    """diffusers' patch embedding recomputing its sin-cos positions with ComfyUI's base grid and interpolation."""
    saved = (patch_embed.base_size, patch_embed.interpolation_scale, patch_embed.height)
    patch_embed.base_size, patch_embed.interpolation_scale, patch_embed.height = base_size, interpolation, -1
    try:
        yield
    finally:
        patch_embed.base_size, patch_embed.interpolation_scale, patch_embed.height = saved


def pixart_sigmas() -> Tensor:
    """The 1000 sigmas of PixArt's training schedule (linear betas 0.0001..0.02), ascending, float32."""
    betas = torch.linspace(BETA_START, BETA_END, TIMESTEPS, dtype=torch.float64)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return (((1.0 - alphas_cumprod) / alphas_cumprod) ** 0.5).float()


def encode_pixart(model: Any, tokenizer: Any, text: str) -> Tensor:
    """The conditioning ``[1, tokens, d_model]`` of ``text`` through the T5 ``model`` as ComfyUI's PixArt text
    encoder makes it: no padding, no mask; weights interpolate from an all-padding sequence of the same length."""
    tokens = t5.tokenize_t5(tokenizer, text, min_length=MIN_LENGTH)
    device = next(model.parameters()).device
    ids = torch.tensor([[token for token, _ in tokens]], dtype=torch.long, device=device)
    with torch.no_grad():
        hidden = model(input_ids=ids).last_hidden_state
        weights = torch.tensor([weight for _, weight in tokens], dtype=hidden.dtype, device=device)
        if bool((weights != 1.0).any()):
            empty = model(input_ids=torch.full_like(ids, t5.PAD_ID)).last_hidden_state
            hidden = empty + (hidden - empty) * weights[None, :, None]
    return hidden
