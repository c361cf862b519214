"""HunyuanDiT (v1.0, v1.1, v1.2) from its files, as diffusers' ``HunyuanDiT2DModel``.

Detection works on ``{key: shape}`` only. The transformer is in Tencent's layout (``pytorch_model_ema.pt``):
``x_embedder.proj`` (patchify convolution), ``t_embedder.mlp``, ``extra_embedder`` (pooled text [+ image size + style]
-> hidden), ``mlp_t5`` (mT5 tokens -> the BERT width), ``text_embedding_padding`` (``[77 + 256, 1024]``: learned
stand-ins for masked tokens), ``pooler`` (attention pooling of the mT5 tokens, 8 heads), ``style_embedder`` (v1.0/1.1
only), ``blocks.N`` (``attn1.Wqkv``, ``attn2.q_proj``/``kv_proj``, q/k layer norms, ``norm1..3``,
``default_modulation``, ``mlp``; ``skip_norm``/``skip_linear`` in the blocks after the middle one) and
``final_layer``; alone, or under ``model.`` in ComfyUI's all-in-one ``hunyuan_dit_1.*.safetensors`` (``model.
diffusion_model.`` is accepted too), whose other components are the Chinese RoBERTa-large "CLIP" (transformers' BERT
layout under ``text_encoders.hydit_clip.transformer.bert.``), mT5-XL (transformers' T5 layout under
``text_encoders.mt5xl.transformer.``), mT5's SentencePiece model as bytes (``text_encoders.mt5xl.spiece_model``) and
SDXL's VAE (LDM layout, under ``vae.``).

The config comes from shapes: width, input channels and patch from ``x_embedder``; head width from the q norm (16
heads of 88 in the real 1408-wide model); blocks counted (40; an even number: the long skips pair block i with block
depth - 1 - i); MLP width from ``mlp.fc1`` (6144, ComfyUI's ratio 4.3637); text widths and lengths from
``text_embedding_padding`` and the pooler; ``extra_embedder``'s input says the version: pooled width alone (1024) is
v1.2, pooled + 6 x 256 (image meta size) + hidden (style) = 3968 is v1.0/v1.1; a final layer twice the input channels
wide means a learned sigma (every released model), whose channels prediction drops.

Sampling (ComfyUI's ``HunyuanDiT``/``HunyuanDiT1``): discrete 1000-step schedule of scaled-linear betas 0.00085 ->
0.018 (v1.2) or 0.00085 -> 0.03 (v1.0/v1.1), v-prediction for every version, SDXL's latent format (scale 0.13025).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from visionatrix.diffusion.checkpoints import weights_fit
from visionatrix.diffusion.checkpoints.detect import prefix_summary
from visionatrix.diffusion.dit import flux_keys, hunyuan_dit_keys
from visionatrix.errors import ModelFileError

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

    from visionatrix.diffusion.sampling.model_sampling import ModelSampling

Shapes = Mapping[str, Sequence[int]]

TRANSFORMER_PREFIXES = ("model.diffusion_model.", "model.", "")
"""Where the transformer lies: under ``model.`` in ComfyUI's all-in-one file (the ``model.diffusion_model.`` of
other ComfyUI checkpoints accepted), or alone."""
MARKERS = ("mlp_t5.0.weight", "blocks.0.attn1.Wqkv.weight", "x_embedder.proj.weight")
COMPONENT_MARKERS = (
    # (component, key prefix, a key after the prefix that shows it is there) in ComfyUI's all-in-one files
    ("hydit_clip", "text_encoders.hydit_clip.transformer.", "bert.embeddings.word_embeddings.weight"),
    ("hydit_clip", "text_encoders.hydit_clip.transformer.", "embeddings.word_embeddings.weight"),
    ("mt5xl", "text_encoders.mt5xl.transformer.", "encoder.block.0.layer.0.SelfAttention.q.weight"),
    ("mt5xl_spiece", "text_encoders.mt5xl.", "spiece_model"),
    ("vae", "vae.", "decoder.conv_in.weight"),
    ("vae", "first_stage_model.", "decoder.conv_in.weight"),
)
REQUIRED = ("t_embedder.mlp.0.weight", "extra_embedder.0.weight", "extra_embedder.2.weight", "mlp_t5.2.weight",
            "text_embedding_padding", "pooler.positional_embedding", "pooler.c_proj.weight",
            "final_layer.linear.weight", "blocks.0.attn1.q_norm.weight", "blocks.0.mlp.fc1.weight")
IMAGE_META_FEATURES = 6 * 256
"""v1.0/v1.1 embed (height, width, target height, target width, crop top, crop left), 256 frequencies each."""
POOLER_HEADS = 8
SAMPLE_SIZE = 128
"""diffusers' ``sample_size`` (1024 px / 8): unused by the module (positions are rotary), kept for its config."""
BETA_START = 0.00085
BETA_END = {"v1.2": 0.018, "v1.1": 0.03}
"""ComfyUI's scaled-linear beta ranges: ``HunyuanDiT`` (v1.2) and ``HunyuanDiT1`` (v1.0/v1.1)."""


class Version(enum.StrEnum):
    V1_1 = "v1.1"
    """v1.0 and v1.1 (one architecture): image meta size and style conditions."""
    V1_2 = "v1.2"
    """v1.2: pooled mT5 text only."""


@dataclass(frozen=True)
class HunyuanInfo:
    """What a HunyuanDiT file holds: its transformer's sizes and the components present (name -> key prefix)."""

    version: Version
    prefix: str
    hidden: int
    heads: int
    depth: int
    patch_size: int
    in_channels: int
    learn_sigma: bool
    mlp_hidden: int
    text_dim: int
    """The BERT width the blocks attend to (1024)."""
    text_len: int
    """BERT tokens the padding covers (77)."""
    t5_dim: int
    """mT5-XL's width (2048)."""
    text_len_t5: int
    """mT5 tokens the pooler and the padding cover (256)."""
    pooled_dim: int
    components: dict[str, str] = field(default_factory=dict)

    @property
    def use_style_cond_and_image_meta_size(self) -> bool:
        return self.version is Version.V1_1

    @property
    def head_width(self) -> int:
        return self.hidden // self.heads

    @property
    def mlp_ratio(self) -> float:
        """A ratio diffusers turns back into :attr:`mlp_hidden` (``int(hidden * ratio)``)."""
        ratio = self.mlp_hidden / self.hidden
        return ratio if int(self.hidden * ratio) == self.mlp_hidden else (self.mlp_hidden + 0.5) / self.hidden


def detect_hunyuan_dit(shapes: Shapes, path: object = "<state dict>") -> HunyuanInfo:
    """The HunyuanDiT transformer (and the components beside it) of the file whose tensors have ``shapes``;
    :class:`ModelFileError` naming the key prefixes found when it is not one, or the size that breaks the rules."""
    prefix = next((p for p in TRANSFORMER_PREFIXES if all(p + key in shapes for key in MARKERS)), None)
    if prefix is None:
        raise ModelFileError(path, "not a HunyuanDiT transformer: no mlp_t5 / blocks.N.attn1.Wqkv / x_embedder "
                                   f"(Tencent layout, alone or under model.); found {prefix_summary(shapes)}")
    missing = [prefix + key for key in REQUIRED if prefix + key not in shapes]
    if missing:
        raise ModelFileError(path, f"HunyuanDiT weights missing: {', '.join(missing)}")

    def shape(key: str) -> tuple[int, ...]:
        if prefix + key not in shapes:
            raise ModelFileError(path, f"HunyuanDiT weight {prefix + key!r} is missing")
        return tuple(int(n) for n in shapes[prefix + key])

    hidden, in_channels, patch, patch_w = shape("x_embedder.proj.weight")
    if patch != patch_w:
        raise ModelFileError(path, f"HunyuanDiT patch embedding is not square ({patch} x {patch_w})")
    head_width = shape("blocks.0.attn1.q_norm.weight")[0]
    if hidden % head_width or head_width % 4:
        raise ModelFileError(path, f"HunyuanDiT head width {head_width} (q norm) does not divide the width {hidden} "
                                   "or is not a multiple of 4 (2-D rotary positions)")
    depth = _count_blocks(shapes, prefix, path)
    skips = _indices(shapes, re.escape(prefix) + r"blocks\.(\d+)\.skip_linear\.weight$")
    if skips != list(range(depth // 2 + 1, depth)):
        raise ModelFileError(path, f"HunyuanDiT long skips in blocks {skips[:3]}...; blocks {depth // 2 + 1}.."
                                   f"{depth - 1} expected for {depth} blocks")
    padding_rows, text_dim = shape("text_embedding_padding")
    text_len_t5 = shape("pooler.positional_embedding")[0] - 1
    t5_dim = shape("mlp_t5.0.weight")[1]
    pooled_dim = shape("pooler.c_proj.weight")[0]
    _check_widths(shape, hidden=hidden, text_dim=text_dim, t5_dim=t5_dim, path=path)
    out_rows = shape("final_layer.linear.weight")[0]
    out_channels = out_rows // (patch * patch)
    if out_channels * patch * patch != out_rows or out_channels not in (in_channels, 2 * in_channels):
        raise ModelFileError(path, f"HunyuanDiT final layer width {out_rows} is not patch² x {in_channels} input "
                                   "channels (or twice that, with a learned sigma)")
    return HunyuanInfo(
        version=_version(shape, shapes, prefix, pooled_dim, hidden, path), prefix=prefix, hidden=hidden,
        heads=hidden // head_width, depth=depth, patch_size=patch, in_channels=in_channels,
        learn_sigma=out_channels == 2 * in_channels, mlp_hidden=shape("blocks.0.mlp.fc1.weight")[0],
        text_dim=text_dim, text_len=padding_rows - text_len_t5, t5_dim=t5_dim, text_len_t5=text_len_t5,
        pooled_dim=pooled_dim, components=_components(shapes, prefix))


def _check_widths(shape: Any, *, hidden: int, text_dim: int, t5_dim: int, path: object) -> None:
    """diffusers fixes the inner widths of ``mlp_t5`` (4 x mT5) and ``extra_embedder`` (4 x hidden)."""
    checks = (("mlp_t5.0.weight", 4 * t5_dim), ("extra_embedder.0.weight", 4 * hidden),
              ("mlp_t5.2.weight", text_dim), ("blocks.0.attn2.kv_proj.weight", 2 * hidden))
    for key, rows in checks:
        if shape(key)[0] != rows:
            raise ModelFileError(path, f"HunyuanDiT {key} has {shape(key)[0]} rows; {rows} expected")
    if shape("blocks.0.attn2.kv_proj.weight")[1] != text_dim:
        raise ModelFileError(path, f"HunyuanDiT cross-attention takes {shape('blocks.0.attn2.kv_proj.weight')[1]} "
                                   f"wide text, but the text padding is {text_dim} wide")
    if t5_dim % POOLER_HEADS:
        raise ModelFileError(path, f"HunyuanDiT pooler width {t5_dim} is not a multiple of its {POOLER_HEADS} heads")


def _version(shape: Any, shapes: Shapes, prefix: str, pooled_dim: int, hidden: int, path: object) -> Version:
    extra_in = shape("extra_embedder.0.weight")[1]
    if extra_in == pooled_dim:
        return Version.V1_2
    if extra_in == pooled_dim + IMAGE_META_FEATURES + hidden:
        style = shape("style_embedder.weight")
        if style[1] != hidden:
            raise ModelFileError(path, f"HunyuanDiT style embedder is {style[1]} wide; {hidden} expected")
        return Version.V1_1
    raise ModelFileError(path, f"HunyuanDiT extra embedder takes {extra_in} features; known: {pooled_dim} (v1.2), "
                               f"{pooled_dim + IMAGE_META_FEATURES + hidden} (v1.0/v1.1: + image size + style)")


def _components(shapes: Shapes, prefix: str) -> dict[str, str]:
    components = {"transformer": prefix}
    if prefix:  # an all-in-one file
        for name, component_prefix, marker in COMPONENT_MARKERS:
            if name not in components and component_prefix + marker in shapes:
                components[name] = component_prefix
    return components


def _count_blocks(shapes: Shapes, prefix: str, path: object) -> int:
    indices = _indices(shapes, re.escape(prefix) + r"blocks\.(\d+)\.")
    if indices != list(range(len(indices))):
        absent = sorted(set(range(max(indices) + 1)) - set(indices))
        raise ModelFileError(path, f"HunyuanDiT blocks {absent[:5]} are missing (blocks up to {max(indices)} found)")
    if len(indices) % 2:
        raise ModelFileError(path, f"HunyuanDiT has {len(indices)} blocks; its long skips need an even number")
    return len(indices)


def _indices(shapes: Mapping[str, Any], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for key in shapes if (m := regex.match(key))})


def hunyuan_diffusers_config(info: HunyuanInfo) -> dict[str, Any]:
    """The ``HunyuanDiT2DModel`` config of ``info``."""
    return {
        "num_attention_heads": info.heads, "attention_head_dim": info.head_width, "in_channels": info.in_channels,
        "patch_size": info.patch_size, "activation_fn": "gelu-approximate", "sample_size": SAMPLE_SIZE,
        "hidden_size": info.hidden, "num_layers": info.depth, "mlp_ratio": info.mlp_ratio,
        "learn_sigma": info.learn_sigma, "cross_attention_dim": info.text_dim, "norm_type": "layer_norm",
        "cross_attention_dim_t5": info.t5_dim, "pooled_projection_dim": info.pooled_dim, "text_len": info.text_len,
        "text_len_t5": info.text_len_t5, "use_style_cond_and_image_meta_size": info.use_style_cond_and_image_meta_size,
    }


def convert_tencent_weights(weights: Mapping[str, Tensor], info: HunyuanInfo, path: object = "<state dict>",
                            ) -> dict[str, Tensor]:
    """diffusers-named tensors from Tencent-named ``weights`` (prefix removed); every Tencent weight must be used:
    a missing or unknown one is a :class:`ModelFileError` naming a few."""
    pieces = hunyuan_dit_keys.tencent_key_map(hidden=info.hidden, depth=info.depth,
                                              style=info.use_style_cond_and_image_meta_size)
    sources = {piece.source for piece in pieces.values()}
    missing = sorted(sources - set(weights))
    unexpected = sorted(set(weights) - sources)
    problems = [f"{label} {len(keys)} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
                for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
    if problems:
        raise ModelFileError(path, "HunyuanDiT transformer weights do not fit: " + "; ".join(problems))
    return flux_keys.apply_key_map(pieces, weights)


def build_hunyuan_dit(state_dict: Mapping[str, Tensor], info: HunyuanInfo, path: object = "<state dict>") -> Module:
    """The ``HunyuanDiT2DModel`` of the file whose tensors are ``state_dict`` (Tencent keys under ``info.prefix``),
    in the stored dtype, on the CPU, in eval mode; strictly loaded."""
    import torch
    from diffusers import HunyuanDiT2DModel

    weights = {key[len(info.prefix):]: value for key, value in state_dict.items() if key.startswith(info.prefix)
               and not (info.prefix == "model." and key.startswith("model.diffusion_model."))}
    if not info.prefix:  # the transformer alone: other components' keys are not its own
        weights = {key: value for key, value in weights.items() if not key.startswith(_component_prefixes())}
    converted = convert_tencent_weights(weights, info, path)
    with torch.device("meta"):
        model: Any = HunyuanDiT2DModel(**hunyuan_diffusers_config(info))
    weights_fit.load_strictly(model, converted, path, "HunyuanDiT transformer", assign=True)
    return model.eval()


def _component_prefixes() -> tuple[str, ...]:
    return (*(prefix for _, prefix, _ in COMPONENT_MARKERS), "text_encoders.")


def model_sampling(info: HunyuanInfo) -> ModelSampling:
    """ComfyUI's sampling for the detected version: discrete scaled-linear betas, v-prediction."""
    from visionatrix.diffusion.sampling.model_sampling import DiscreteSchedule, ModelSampling, Prediction

    return ModelSampling(DiscreteSchedule(beta_start=BETA_START, beta_end=BETA_END[info.version.value]),
                         Prediction.V)
