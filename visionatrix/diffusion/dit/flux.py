"""Flux.1 transformers (dev, schnell, Kontext, Fill) from their files, as diffusers' ``FluxTransformer2DModel``.

Detection works on ``{key: shape}`` only. Two layouts are known:

- Black Forest Labs' (the ``flux1-*.safetensors`` users download, ComfyUI's ``diffusion_models``): ``img_in``,
  ``txt_in``, ``time_in``, ``vector_in``, ``guidance_in`` (dev, Kontext, Fill only), ``double_blocks.N``,
  ``single_blocks.N``, ``final_layer``; alone or under ``model.diffusion_model.`` in an all-in-one file (whose VAE
  is under ``vae.`` and text encoders under ``text_encoders.clip_l.transformer.`` / ``text_encoders.t5xxl.
  transformer.``);
- diffusers' (``x_embedder``, ``context_embedder``, ``transformer_blocks.N``, ``single_transformer_blocks.N``).

The config comes from shapes plus the family's rules: hidden width = image input projection's output width; heads
of width 128 (a width that is not a multiple is refused); MLP 4 x hidden (the only ratio diffusers' module builds);
rotary axes (16, 56, 56) (they sum to the head width). ``img_in`` takes 64 channels (16 latent channels packed 2 x 2)
or, for Fill, 384 (64 + 320 of masked image and mask). Kontext has dev's weights: only a name tells them apart.

Modules are built on the ``meta`` device and take the file's tensors (stored dtype kept), strictly: a missing,
unexpected or misshapen weight is a :class:`ModelFileError`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from visionatrix.diffusion.checkpoints import weights_fit
from visionatrix.diffusion.checkpoints.detect import prefix_summary
from visionatrix.diffusion.dit import flux_keys
from visionatrix.errors import ModelFileError

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

Shapes = Mapping[str, Sequence[int]]

TRANSFORMER_PREFIXES = ("model.diffusion_model.", "")
"""Where the transformer lies: under ComfyUI's prefix in an all-in-one file, or alone."""
COMPONENT_MARKERS = (
    # (component, key prefix, a key after the prefix that shows it is there) in ComfyUI's all-in-one Flux files
    ("vae", "vae.", "decoder.conv_in.weight"),
    ("clip_l", "text_encoders.clip_l.transformer.", "text_model.embeddings.token_embedding.weight"),
    ("t5xxl", "text_encoders.t5xxl.transformer.", "shared.weight"),
)
HEAD_WIDTH = 128
"""Flux attends with heads of width 128 (the number of heads grows with the width: 24 for the real 3072)."""
MLP_RATIO = 4
"""diffusers' Flux blocks fix the MLP at 4 x the hidden width."""
AXES_DIMS_ROPE = (16, 56, 56)
"""Rotary dimensions per position axis (index, row, column); they sum to the head width."""
PACKED_LATENT_CHANNELS = 64
"""16 latent channels packed 2 x 2: the image tokens' width (and the output's)."""
FILL_IN_CHANNELS = 384
"""Fill's image tokens: 64 (packed latent) + 64 (packed latent of the masked image) + 256 (the pixel mask, 8 x 8
per latent pixel, packed 2 x 2)."""


class FluxLayout(enum.StrEnum):
    BFL = "bfl"
    DIFFUSERS = "diffusers"


class FluxVariant(enum.StrEnum):
    DEV = "dev"
    """Guidance-distilled (``guidance_in``): dev and Kontext (same weights; Kontext only by name)."""
    SCHNELL = "schnell"
    """Timestep-distilled, no guidance input."""
    FILL = "fill"
    """Inpainting/outpainting: 384 input channels."""


@dataclass(frozen=True)
class _Layout:
    """Where each size-telling weight lies in one layout (keys after the transformer prefix)."""

    image_in: str
    context_in: str
    pooled_in: str
    guidance_in: str
    output: str
    double_block: re.Pattern[str]
    single_block: re.Pattern[str]
    double_mlp: str
    single_mlp: str
    single_mlp_after_rows: int
    """How many hidden-width row blocks come before the MLP rows in ``single_mlp`` (BFL's fused q, k, v: 3)."""
    query_norm: str


LAYOUTS = {
    FluxLayout.BFL: _Layout(
        image_in="img_in.weight", context_in="txt_in.weight", pooled_in="vector_in.in_layer.weight",
        guidance_in="guidance_in.in_layer.weight", output="final_layer.linear.weight",
        double_block=re.compile(r"double_blocks\.(\d+)\."), single_block=re.compile(r"single_blocks\.(\d+)\."),
        double_mlp="double_blocks.0.img_mlp.0.weight", single_mlp="single_blocks.0.linear1.weight",
        single_mlp_after_rows=3, query_norm="double_blocks.0.img_attn.norm.query_norm.scale"),
    FluxLayout.DIFFUSERS: _Layout(
        image_in="x_embedder.weight", context_in="context_embedder.weight",
        pooled_in="time_text_embed.text_embedder.linear_1.weight",
        guidance_in="time_text_embed.guidance_embedder.linear_1.weight", output="proj_out.weight",
        double_block=re.compile(r"transformer_blocks\.(\d+)\."),
        single_block=re.compile(r"single_transformer_blocks\.(\d+)\."),
        double_mlp="transformer_blocks.0.ff.net.0.proj.weight",
        single_mlp="single_transformer_blocks.0.proj_mlp.weight",
        single_mlp_after_rows=0, query_norm="transformer_blocks.0.attn.norm_q.weight"),
}
MARKERS = {
    FluxLayout.BFL: ("img_in.weight", "double_blocks.0.img_attn.qkv.weight"),
    FluxLayout.DIFFUSERS: ("x_embedder.weight", "context_embedder.weight", "transformer_blocks.0.attn.to_q.weight"),
}
"""Keys (after the prefix) that together say "a Flux transformer in this layout"."""


@dataclass(frozen=True)
class FluxInfo:
    """What a Flux file holds: layout, where the transformer lies, its variant and its sizes."""

    layout: FluxLayout
    prefix: str
    variant: FluxVariant
    guidance: bool
    in_channels: int
    out_channels: int
    hidden: int
    heads: int
    depth: int
    """Double-stream (MMDiT) blocks: 19 in the real model."""
    single_depth: int
    """Single-stream blocks: 38 in the real model."""
    mlp_ratio: float
    context_dim: int
    """Text token width (T5-XXL: 4096)."""
    pooled_dim: int
    """Pooled text width (CLIP-L: 768)."""
    axes_dims_rope: tuple[int, int, int] = AXES_DIMS_ROPE
    components: dict[str, str] = field(default_factory=dict)
    """Component name -> key prefix: ``transformer`` always; ``vae``, ``clip_l``, ``t5xxl`` in all-in-one files."""

    @property
    def head_width(self) -> int:
        return self.hidden // self.heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.hidden * self.mlp_ratio)


def detect_flux(shapes: Shapes, path: object = "<state dict>") -> FluxInfo:
    """The layout, variant and sizes of the Flux transformer whose tensors have ``shapes``; :class:`ModelFileError`
    naming the key prefixes found when it is not one, or naming the size that breaks the family's rules."""
    found = next(((layout, prefix) for prefix in TRANSFORMER_PREFIXES for layout, markers in MARKERS.items()
                  if all(prefix + key in shapes for key in markers)), None)
    if found is None:
        raise ModelFileError(path, "not a Flux.1 transformer: no img_in/double_blocks (Black Forest Labs layout, "
                                   "alone or under model.diffusion_model.) nor x_embedder/transformer_blocks "
                                   f"(diffusers layout); found {prefix_summary(shapes)}")
    layout, prefix = found
    keys = LAYOUTS[layout]
    inner = {key[len(prefix):]: tuple(shape) for key, shape in shapes.items() if key.startswith(prefix)}

    def shape(key: str) -> tuple[int, ...]:
        if key not in inner:
            raise ModelFileError(path, f"Flux weight {prefix + key!r} is missing")
        return inner[key]

    hidden, in_channels = shape(keys.image_in)
    heads = _heads(hidden, shape(keys.query_norm), path)
    mlp_hidden = shape(keys.double_mlp)[0]
    single_mlp = shape(keys.single_mlp)[0] - keys.single_mlp_after_rows * hidden
    if mlp_hidden != MLP_RATIO * hidden or single_mlp != mlp_hidden:
        raise ModelFileError(path, f"Flux MLP widths {mlp_hidden} (double blocks) and {single_mlp} (single blocks) "
                                   f"are not {MLP_RATIO} x the hidden width {hidden}, the only ratio diffusers' "
                                   "FluxTransformer2DModel builds")
    guidance = keys.guidance_in in inner
    components = {"transformer": prefix}
    for name, component_prefix, marker in COMPONENT_MARKERS:
        if prefix and component_prefix + marker in shapes:
            components[name] = component_prefix
    return FluxInfo(
        layout=layout, prefix=prefix, variant=_variant(in_channels, guidance, path), guidance=guidance,
        in_channels=in_channels, out_channels=shape(keys.output)[0], hidden=hidden, heads=heads,
        depth=_count_blocks(inner, keys.double_block, "double", path),
        single_depth=_count_blocks(inner, keys.single_block, "single", path),
        mlp_ratio=mlp_hidden / hidden, context_dim=shape(keys.context_in)[1], pooled_dim=shape(keys.pooled_in)[1],
        components=components)


def _heads(hidden: int, query_norm: tuple[int, ...], path: object) -> int:
    if hidden % HEAD_WIDTH:
        raise ModelFileError(path, f"Flux hidden width {hidden} is not a multiple of the family's head width "
                                   f"{HEAD_WIDTH}")
    if query_norm != (HEAD_WIDTH,):
        raise ModelFileError(path, f"Flux query norm has shape {list(query_norm)}; heads of width {HEAD_WIDTH} "
                                   "expected")
    return hidden // HEAD_WIDTH


def _variant(in_channels: int, guidance: bool, path: object) -> FluxVariant:
    if in_channels == FILL_IN_CHANNELS:
        return FluxVariant.FILL
    if in_channels == PACKED_LATENT_CHANNELS:
        return FluxVariant.DEV if guidance else FluxVariant.SCHNELL
    raise ModelFileError(path, f"Flux image input takes {in_channels} channels; known: {PACKED_LATENT_CHANNELS} "
                               f"(dev, schnell, Kontext), {FILL_IN_CHANNELS} (Fill)")


def _count_blocks(inner: Shapes, pattern: re.Pattern[str], kind: str, path: object) -> int:
    indices = {int(m.group(1)) for key in inner if (m := pattern.match(key))}
    if not indices:
        raise ModelFileError(path, f"Flux transformer has no {kind} blocks")
    if len(indices) != max(indices) + 1:
        absent = sorted(set(range(max(indices) + 1)) - indices)
        raise ModelFileError(path, f"Flux {kind} blocks {absent[:5]} are missing (blocks up to {max(indices)} found)")
    return len(indices)


def variant_from_filename(name: str) -> str | None:
    """``kontext`` where a file's name says Flux Kontext (its weights are dev's); None otherwise."""
    return "kontext" if "kontext" in name.lower() else None


def flux_diffusers_config(info: FluxInfo) -> dict[str, Any]:
    """The ``FluxTransformer2DModel`` config of the detected model."""
    return {
        "patch_size": 1, "in_channels": info.in_channels, "out_channels": info.out_channels,
        "num_layers": info.depth, "num_single_layers": info.single_depth, "attention_head_dim": info.head_width,
        "num_attention_heads": info.heads, "joint_attention_dim": info.context_dim,
        "pooled_projection_dim": info.pooled_dim, "guidance_embeds": info.guidance,
        "axes_dims_rope": info.axes_dims_rope,
    }


def convert_bfl_weights(weights: Mapping[str, Tensor], info: FluxInfo, path: object = "<state dict>",
                        ) -> dict[str, Tensor]:
    """diffusers-named tensors from the BFL-named ``weights`` (prefix removed); every BFL weight must be used once:
    a missing or an unknown one is a :class:`ModelFileError` naming a few."""
    pieces = flux_keys.bfl_key_map(hidden=info.hidden, mlp_hidden=info.mlp_hidden, depth=info.depth,
                                   single_depth=info.single_depth, guidance=info.guidance)
    sources = {piece.source for piece in pieces.values()}
    missing = sorted(sources - set(weights))
    unexpected = sorted(set(weights) - sources)
    problems = [f"{label} {len(keys)} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
                for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
    if problems:
        raise ModelFileError(path, "Flux transformer weights do not fit: " + "; ".join(problems))
    return flux_keys.apply_key_map(pieces, weights)


def build_flux(state_dict: Mapping[str, Tensor], info: FluxInfo, path: object = "<state dict>") -> Module:
    """The ``FluxTransformer2DModel`` of the file whose tensors are ``state_dict`` (either layout, prefixed or
    not), on the CPU in the file's dtype, in eval mode."""
    import torch
    from diffusers import FluxTransformer2DModel

    weights = {key[len(info.prefix):]: value for key, value in state_dict.items() if key.startswith(info.prefix)}
    if info.layout is FluxLayout.BFL:
        weights = convert_bfl_weights(weights, info, path)
    with torch.device("meta"):
        model: Any = FluxTransformer2DModel(**flux_diffusers_config(info))
    weights_fit.load_strictly(model, weights, path, "Flux transformer", assign=True)
    return model.eval()
