"""Stable Diffusion 3 / 3.5 transformers (MMDiT) from their files, as diffusers' ``SD3Transformer2DModel``.

Detection works on ``{key: shape}`` only. The MMDiT layout (Stability's, which ComfyUI's ``diffusion_models`` and
the all-in-one ``sd3*.safetensors`` use): ``x_embedder.proj`` (patchify convolution), ``pos_embed`` (``[1, max²,
hidden]``), ``t_embedder.mlp``, ``y_embedder.mlp`` (pooled text), ``context_embedder`` (text tokens), ``joint_blocks.N``
(``x_block`` / ``context_block``: ``attn.qkv``, ``attn.proj``, ``adaLN_modulation.1``, ``mlp.fc1``/``fc2``; the last
context block keeps only its modulation and qkv), ``final_layer``; alone or under ``model.diffusion_model.`` in an
all-in-one file, whose other components are ``text_encoders.clip_l.transformer.``, ``text_encoders.clip_g.
transformer.`` (both transformers' CLIP layout), ``text_encoders.t5xxl.transformer.`` (transformers' T5) and
``first_stage_model.`` (the 16-channel VAE, LDM layout).

The config comes from shapes plus the family's rule: heads of width 64, so the number of heads ("depth") is the
hidden width / 64 (24 for SD3 medium's 1536, 38 for SD3.5 large's 2432); the layer count is the number of joint
blocks (equal to the depth in Stability's models, as ComfyUI reads it, not required). ``ln_q``/``ln_k`` keys mean
RMS query/key norms (SD3.5); ``x_block.attn2`` (a second, image-only attention) marks SD3.5 medium's dual-attention
layers. Keys are renamed with diffusers' pure ``convert_sd3_transformer_checkpoint_to_diffusers``; the module is
built on the ``meta`` device and takes the file's tensors (stored dtype kept), strictly: a missing, unexpected or
misshapen weight is a :class:`ModelFileError`.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from visionatrix.diffusion.checkpoints import weights_fit
from visionatrix.diffusion.checkpoints.detect import prefix_summary
from visionatrix.errors import ModelFileError

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

Shapes = Mapping[str, Sequence[int]]

TRANSFORMER_PREFIXES = ("model.diffusion_model.", "")
"""Where the transformer lies: under ComfyUI's prefix in an all-in-one file, or alone."""
COMPONENT_MARKERS = (
    # (component, key prefix, a key after the prefix that shows it is there) in all-in-one SD3 files
    ("vae", "first_stage_model.", "encoder.conv_in.weight"),
    ("clip_l", "text_encoders.clip_l.transformer.", "text_model.embeddings.token_embedding.weight"),
    ("clip_g", "text_encoders.clip_g.transformer.", "text_model.embeddings.token_embedding.weight"),
    ("t5xxl", "text_encoders.t5xxl.transformer.", "shared.weight"),
)
REQUIRED = ("x_embedder.proj.weight", "pos_embed", "context_embedder.weight", "y_embedder.mlp.0.weight",
            "t_embedder.mlp.0.weight", "final_layer.linear.weight")
"""MMDiT weights every SD3 transformer has (after the transformer's prefix)."""
HEAD_WIDTH = 64
"""SD3 attends with heads of width 64: hidden = 64 x depth."""
SAMPLE_SIZE = 128
"""The latent size SD3 was trained at (diffusers' ``sample_size``; positions come from ``pos_embed_max_size``)."""
SCALED_FP8_KEY = "scaled_fp8"
"""ComfyUI's marker of fp8 weights with per-layer scales (``*.scale_weight``): not supported yet."""


class Variant(enum.StrEnum):
    SD3_MEDIUM = "sd3_medium"
    """SD3 (3.0) medium: no query/key norms, no dual attention."""
    SD35_LARGE = "sd35_large"
    """SD3.5 large (and large turbo): RMS query/key norms."""
    SD35_MEDIUM = "sd35_medium"
    """SD3.5 medium: RMS query/key norms and a second image attention (``attn2``) in its first layers."""


@dataclass(frozen=True)
class SD3Info:
    """What an SD3 file holds: its transformer's shape and the components present (name -> key prefix)."""

    variant: Variant
    prefix: str
    """The transformer's key prefix (``model.diffusion_model.`` in all-in-one files, ``""`` alone)."""
    hidden_size: int
    depth: int
    """Heads of width 64: hidden / 64."""
    num_layers: int
    patch_size: int
    in_channels: int
    out_channels: int
    pos_embed_max_size: int
    context_dim: int
    """The text-token width the transformer takes (4096: T5-XXL, CLIP padded to it)."""
    caption_projection_dim: int
    pooled_dim: int
    """The pooled text width (2048: CLIP-L 768 + CLIP-G 1280)."""
    qk_norm: str | None
    dual_attention_layers: tuple[int, ...]
    components: dict[str, str] = field(default_factory=dict)

    @property
    def num_attention_heads(self) -> int:
        return self.depth

    @property
    def attention_head_dim(self) -> int:
        return HEAD_WIDTH


def detect_sd3(shapes: Shapes, path: object = "<state dict>") -> SD3Info:
    """The SD3 transformer (and the components beside it) of the file whose tensors have ``shapes``;
    :class:`ModelFileError` naming the key prefixes found when it is not one."""
    prefix = next((p for p in TRANSFORMER_PREFIXES if f"{p}joint_blocks.0.x_block.attn.qkv.weight" in shapes
                   and f"{p}x_embedder.proj.weight" in shapes), None)
    if prefix is None:
        raise ModelFileError(path, "not an SD3 transformer: no MMDiT weights (joint_blocks.N.x_block.attn.qkv, "
                                   f"x_embedder.proj, with or without model.diffusion_model.); found "
                                   f"{prefix_summary(shapes)}")
    missing = [key for key in REQUIRED if prefix + key not in shapes]
    if missing:
        raise ModelFileError(path, f"SD3 transformer weights missing: {', '.join(prefix + k for k in missing)}")

    def shape(key: str) -> Sequence[int]:
        return shapes[prefix + key]

    hidden, in_channels, patch, patch_w = (int(n) for n in shape("x_embedder.proj.weight"))
    if patch != patch_w:
        raise ModelFileError(path, f"SD3 patch embedding is not square ({patch} x {patch_w})")
    if hidden % HEAD_WIDTH:
        raise ModelFileError(path, f"SD3 hidden width {hidden} is not a multiple of the head width {HEAD_WIDTH}")
    layers = _indices(shapes, re.escape(prefix) + r"joint_blocks\.(\d+)\.")
    if layers != list(range(len(layers))):
        raise ModelFileError(path, f"SD3 joint blocks are not numbered 0..n-1 (found {layers[:3]}...)")
    positions = int(shape("pos_embed")[-2])
    max_size = math.isqrt(positions)
    if max_size * max_size != positions:
        raise ModelFileError(path, f"SD3 pos_embed holds {positions} positions, not a square grid")
    out_rows = int(shape("final_layer.linear.weight")[0])
    if out_rows % (patch * patch):
        raise ModelFileError(path, f"SD3 final layer width {out_rows} is not a multiple of patch² {patch * patch}")
    caption_dim, context_dim = (int(n) for n in shape("context_embedder.weight"))
    qk_norm = "rms_norm" if any(key.startswith(prefix + "joint_blocks.") and ".ln_q." in key for key in shapes) \
        else None
    dual = tuple(_indices(shapes, re.escape(prefix) + r"joint_blocks\.(\d+)\.x_block\.attn2\.qkv\.weight$"))
    variant = Variant.SD35_MEDIUM if dual else Variant.SD35_LARGE if qk_norm else Variant.SD3_MEDIUM
    components = {"transformer": prefix}
    for name, component_prefix, marker in COMPONENT_MARKERS:
        if component_prefix + marker in shapes:
            components[name] = component_prefix
    return SD3Info(variant=variant, prefix=prefix, hidden_size=hidden, depth=hidden // HEAD_WIDTH,
                   num_layers=len(layers), patch_size=patch, in_channels=in_channels,
                   out_channels=out_rows // (patch * patch), pos_embed_max_size=max_size, context_dim=context_dim,
                   caption_projection_dim=caption_dim, pooled_dim=int(shape("y_embedder.mlp.0.weight")[1]),
                   qk_norm=qk_norm, dual_attention_layers=dual, components=components)


def sd3_diffusers_config(info: SD3Info) -> dict[str, Any]:
    """The ``SD3Transformer2DModel`` config of ``info``."""
    return {
        "sample_size": SAMPLE_SIZE, "patch_size": info.patch_size, "in_channels": info.in_channels,
        "num_layers": info.num_layers, "attention_head_dim": info.attention_head_dim,
        "num_attention_heads": info.num_attention_heads, "joint_attention_dim": info.context_dim,
        "caption_projection_dim": info.caption_projection_dim, "pooled_projection_dim": info.pooled_dim,
        "out_channels": info.out_channels, "pos_embed_max_size": info.pos_embed_max_size,
        "dual_attention_layers": info.dual_attention_layers, "qk_norm": info.qk_norm,
    }


def build_sd3(state_dict: Mapping[str, Tensor], info: SD3Info, path: object = "<state dict>") -> Module:
    """The ``SD3Transformer2DModel`` of the file (``state_dict``: its tensors, MMDiT keys under ``info.prefix``),
    in the stored dtype, on the CPU, in eval mode."""
    from diffusers import SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    if SCALED_FP8_KEY in state_dict or info.prefix + SCALED_FP8_KEY in state_dict:
        _refuse_scaled_fp8({key: () for key in state_dict}, path)
    weights = {key[len(info.prefix):]: value for key, value in state_dict.items() if key.startswith(info.prefix)
               and (info.prefix or not _is_component_key(key))}
    config = sd3_diffusers_config(info)
    try:
        converted = convert_sd3_transformer_checkpoint_to_diffusers(weights)  # pops what it renames
    except KeyError as exc:
        raise ModelFileError(path, f"SD3 transformer weight {exc.args[0]!r} is missing") from exc
    if weights:  # left over: names the converter does not know
        converted |= weights
    with _meta_device():
        model: Any = SD3Transformer2DModel(**config)
    weights_fit.load_strictly(model, converted, path, "SD3 transformer", assign=True)
    return model.eval()


def _refuse_scaled_fp8(shapes: Mapping[str, Any], path: object) -> None:
    scaled = [key for key in shapes if key.rsplit(".", 1)[-1] in (SCALED_FP8_KEY, "scale_weight")]
    if scaled:
        raise ModelFileError(path, f"ComfyUI scaled fp8 weights ({scaled[0]!r}, {len(scaled)} scale tensors) must be "
                                   "dequantized before the module is built (checkpoints.fp8.dequantize_scaled_fp8, as "
                                   "dit.loading does)")


def _is_component_key(key: str) -> bool:
    return key.startswith(tuple(prefix for _, prefix, _ in COMPONENT_MARKERS))


def _indices(shapes: Mapping[str, Any], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for key in shapes if (m := regex.match(key))})


def _meta_device() -> Any:
    """Build modules without allocating or initialising weights (the file's tensors are assigned after)."""
    import torch

    return torch.device("meta")
