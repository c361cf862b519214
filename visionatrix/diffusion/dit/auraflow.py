"""AuraFlow (fal's ``aura_flow_0.3.safetensors``) from its file: the transformer as diffusers'
``AuraFlowTransformer2DModel``, its Pile-T5-XL text encoder, prompts encoded and the network called as ComfyUI does.

File: ComfyUI's all-in-one layout — the MMDiT under ``model.diffusion_model.`` in AuraFlow's own names
(``init_x_linear``, ``positional_encoding``, ``register_tokens``, ``cond_seq_linear``, ``t_embedder.mlp``,
``double_layers.N``, ``single_layers.N``, ``modF``, ``final_linear``), Pile-T5-XL under
``text_encoders.pile_t5xl.transformer.`` (transformers' T5 layout), the SDXL VAE under ``vae.`` (ComfyUI's
``vae_key_prefix`` for AuraFlow; ``first_stage_model.`` is looked for too); the transformer alone (no prefix) is
read as well. Detection works on ``{key: shape}`` only; the config comes from shapes plus the family's rules: hidden
width = ``init_x_linear``'s output, heads of width 256 (v0.3: 3072 = 12 heads), patch 2 (ComfyUI's fixed value;
``init_x_linear`` takes 2·2·4 = 16 values), the learned position grid is square (``positional_encoding``
``[1, side², hidden]``; 64² in v0.3), the MLP width is ``find_multiple(int(8·hidden/3), 256)``.

Prediction is rectified flow (ComfyUI's ``ModelSamplingAuraFlow``: shift 1.73, multiplier 1.0): the network gets
ComfyUI's timestep ``sigma · 1.0`` (in 0..1) — diffusers' module scales it by 1000 inside its time embedding, exactly
as AuraFlow's own ``t_embedder`` does, and diffusers' pipeline passes ``t / 1000`` — and returns the velocity
(noise - clean), which ComfyUI turns into ``x - sigma · v``. :func:`predict` patchifies, places the position grid
and unpatchifies as ComfyUI's MMDiT does (sizes not a multiple of the patch are padded circularly and cropped back;
the grid is centred with ``(side - h) // 2``; larger images interpolate the grid bilinearly), which diffusers' own
forward does not for odd or oversized grids.

Text (:func:`encode_auraflow`): ComfyUI's ``AuraT5Tokenizer`` — LLaMA's SentencePiece vocabulary, each word of the
weighted prompt tokenized alone, no start token, one end token (``</s>``, 2), padded with id 1 to 256 tokens
(``MIN_LENGTH``; longer prompts are not cut); the encoder attends to the tokens up to the end token only and the
padded rows of its output are zeroed (ComfyUI's ``enable_attention_masks`` and ``zero_out_masked``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from visionatrix.diffusion.checkpoints import weights_fit
from visionatrix.diffusion.checkpoints.detect import prefix_summary
from visionatrix.diffusion.dit import auraflow_keys, t5
from visionatrix.diffusion.text.weights import parse_weights
from visionatrix.errors import ModelFileError

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

Shapes = Mapping[str, Sequence[int]]

TRANSFORMER_PREFIXES = ("model.diffusion_model.", "")
MARKERS = ("init_x_linear.weight", "cond_seq_linear.weight", "positional_encoding", "modF.1.weight")
COMPONENT_MARKERS = (
    ("vae", "vae.", "decoder.conv_in.weight"),
    ("vae", "first_stage_model.", "decoder.conv_in.weight"),
    ("pile_t5xl", "text_encoders.pile_t5xl.transformer.", "encoder.block.0.layer.0.SelfAttention.q.weight"),
)
TEXT_ENCODER_PREFIXES = ("text_encoders.pile_t5xl.transformer.", "pile_t5xl.transformer.", "")
HEAD_WIDTH = 256
PATCH_SIZE = 2
REGISTER_TOKENS = 8
SHIFT = 1.73
"""ComfyUI's ``ModelSamplingAuraFlow`` default (and the AuraFlow model's ``sampling_settings``)."""
MULTIPLIER = 1.0
"""The network timestep is ``sigma · MULTIPLIER``: sigma itself, in 0..1."""
MIN_LENGTH = 256
END_ID = 2
PAD_ID = 1


@dataclass(frozen=True)
class AuraFlowInfo:
    """What an AuraFlow file holds: where the transformer lies, its sizes and the other components."""

    prefix: str
    hidden: int
    heads: int
    depth: int
    """Double-stream (MMDiT) layers: 4 in v0.3."""
    single_depth: int
    """Single-stream layers: 32 in v0.3."""
    in_channels: int
    out_channels: int
    context_dim: int
    """Text token width (Pile-T5-XL: 2048)."""
    pos_embed_max_size: int
    """Learned positions: a square grid, side² entries (4096 in v0.3)."""
    patch_size: int = PATCH_SIZE
    components: dict[str, str] = field(default_factory=dict)
    """Component name -> key prefix: ``transformer`` always; ``vae``, ``pile_t5xl`` in all-in-one files."""

    @property
    def head_width(self) -> int:
        return self.hidden // self.heads


def detect_auraflow(shapes: Shapes, path: object = "<state dict>") -> AuraFlowInfo:
    """The sizes of the AuraFlow transformer whose tensors have ``shapes``; :class:`ModelFileError` naming the key
    prefixes found when it is not one, or the size that breaks the family's rules."""
    prefix = next((prefix for prefix in TRANSFORMER_PREFIXES if all(prefix + key in shapes for key in MARKERS)), None)
    if prefix is None:
        raise ModelFileError(path, "not an AuraFlow transformer: no init_x_linear/cond_seq_linear/positional_encoding "
                                   f"(alone or under model.diffusion_model.); found {prefix_summary(shapes)}")
    inner = {key[len(prefix):]: tuple(int(n) for n in shape) for key, shape in shapes.items() if key.startswith(prefix)}

    def shape(key: str) -> tuple[int, ...]:
        if key not in inner:
            raise ModelFileError(path, f"AuraFlow weight {prefix + key!r} is missing")
        return inner[key]

    hidden, patch_values = shape("init_x_linear.weight")
    if hidden % HEAD_WIDTH:
        raise ModelFileError(path, f"AuraFlow hidden width {hidden} is not a multiple of the head width {HEAD_WIDTH}")
    area = PATCH_SIZE * PATCH_SIZE
    out_values = shape("final_linear.weight")[0]
    if patch_values % area or out_values % area:
        raise ModelFileError(path, f"AuraFlow patch input {patch_values} / output {out_values} values are not "
                                   f"multiples of the {PATCH_SIZE} x {PATCH_SIZE} patch")
    positions = shape("positional_encoding")
    side = math.isqrt(positions[1]) if len(positions) == 3 else 0
    if len(positions) != 3 or side * side != positions[1] or positions[2] != hidden:
        raise ModelFileError(path, f"AuraFlow positional_encoding has shape {list(positions)}; [1, side², {hidden}] "
                                   "expected")
    _check(shape("t_embedder.mlp.0.weight")[0] == hidden, path,
           f"AuraFlow time embedding width {shape('t_embedder.mlp.0.weight')[0]} differs from the hidden width "
           f"{hidden} (diffusers' module ties them)")
    _check(shape("register_tokens") == (1, REGISTER_TOKENS, hidden), path,
           f"AuraFlow register_tokens has shape {list(shape('register_tokens'))}; [1, {REGISTER_TOKENS}, {hidden}] "
           "expected")
    depth, single_depth = _count(inner, "double_layers", path), _count(inner, "single_layers", path)
    if depth + single_depth == 0:
        raise ModelFileError(path, "AuraFlow transformer has no double_layers nor single_layers")
    block = "double_layers.0.mlpX" if depth else "single_layers.0.mlp"
    mlp = shape(f"{block}.c_fc1.weight")[0]
    _check(mlp == _mlp_width(hidden), path, f"AuraFlow MLP width {mlp} is not the family's {_mlp_width(hidden)} for "
                                            f"hidden width {hidden}")
    components = {"transformer": prefix}
    for name, component_prefix, marker in COMPONENT_MARKERS:
        if prefix and name not in components and component_prefix + marker in shapes:
            components[name] = component_prefix
    return AuraFlowInfo(
        prefix=prefix, hidden=hidden, heads=hidden // HEAD_WIDTH, depth=depth, single_depth=single_depth,
        in_channels=patch_values // area, out_channels=out_values // area,
        context_dim=shape("cond_seq_linear.weight")[1], pos_embed_max_size=positions[1], components=components)


def _mlp_width(hidden: int) -> int:
    width = int(2 * 4 * hidden / 3)
    return width if width % 256 == 0 else width + 256 - width % 256


def _check(condition: bool, path: object, why: str) -> None:
    if not condition:
        raise ModelFileError(path, why)


def _count(inner: Shapes, kind: str, path: object) -> int:
    pattern = re.compile(rf"{kind}\.(\d+)\.")
    indices = {int(m.group(1)) for key in inner if (m := pattern.match(key))}
    if indices and len(indices) != max(indices) + 1:
        absent = sorted(set(range(max(indices) + 1)) - indices)
        raise ModelFileError(path, f"AuraFlow {kind} {absent[:5]} are missing (up to {max(indices)} found)")
    return len(indices)


def auraflow_diffusers_config(info: AuraFlowInfo) -> dict[str, Any]:
    """The ``AuraFlowTransformer2DModel`` config of the detected model."""
    return {
        "sample_size": math.isqrt(info.pos_embed_max_size), "patch_size": info.patch_size,
        "in_channels": info.in_channels, "out_channels": info.out_channels, "num_mmdit_layers": info.depth,
        "num_single_dit_layers": info.single_depth, "attention_head_dim": info.head_width,
        "num_attention_heads": info.heads, "joint_attention_dim": info.context_dim,
        "caption_projection_dim": info.hidden, "pos_embed_max_size": info.pos_embed_max_size,
    }


def build_auraflow(state_dict: Mapping[str, Tensor], info: AuraFlowInfo, path: object = "<state dict>") -> Module:
    """The ``AuraFlowTransformer2DModel`` of the file whose tensors are ``state_dict`` (prefixed or not), on the CPU
    in the file's dtype, in eval mode; every AuraFlow weight must be used once (:class:`ModelFileError` naming the
    missing and unknown ones)."""
    from diffusers import AuraFlowTransformer2DModel

    weights = {key[len(info.prefix):]: value for key, value in state_dict.items() if key.startswith(info.prefix)}
    names = auraflow_keys.key_map(info.depth, info.single_depth)
    sources = set(names.values())
    missing, unexpected = sorted(sources - set(weights)), sorted(set(weights) - sources)
    problems = [f"{label} {len(keys)} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
                for label, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
    if problems:
        raise ModelFileError(path, "AuraFlow transformer weights do not fit: " + "; ".join(problems))
    with torch.device("meta"):
        model: Any = AuraFlowTransformer2DModel(**auraflow_diffusers_config(info))
    weights_fit.load_strictly(model, auraflow_keys.apply_key_map(names, weights), path, "AuraFlow transformer",
                              assign=True)
    return model.eval()


def build_auraflow_text_encoder(state_dict: Mapping[str, Tensor], path: object = "<state dict>") -> Any:
    """Pile-T5-XL (alone or under ``text_encoders.pile_t5xl.transformer.``) as transformers' ``UMT5EncoderModel``
    when every block has its own relative attention bias (Pile-T5, ComfyUI's ``umt5`` config), else
    ``T5EncoderModel``; config from shapes (see :mod:`visionatrix.diffusion.dit.t5`); stored dtype, eval mode."""
    from transformers import T5EncoderModel, UMT5Config, UMT5EncoderModel

    prefix = next((p for p in TEXT_ENCODER_PREFIXES if p + t5.MARKER in state_dict), None)
    if prefix is None:
        found = prefix_summary(dict.fromkeys(state_dict, ()))
        raise ModelFileError(path, f"no Pile-T5 text encoder: no {t5.MARKER} (alone or under "
                                   f"text_encoders.pile_t5xl.transformer.); found {found}")
    weights = {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}
    if not prefix:
        weights = {key: value for key, value in weights.items() if not key.startswith(t5.IGNORED_PREFIXES)}
    scaled = [key for key in weights if key.rsplit(".", 1)[-1] in (t5.SCALED_FP8_KEY, "scale_weight", "scale_input")]
    if scaled:
        raise ModelFileError(path, f"ComfyUI scaled fp8 text encoder ({scaled[0]!r}) is not supported yet")
    embedding = weights.get("shared.weight", weights.get("encoder.embed_tokens.weight"))
    if embedding is None:
        raise ModelFileError(path, "Pile-T5 token embedding (shared.weight) is missing")
    weights["shared.weight"] = weights["encoder.embed_tokens.weight"] = embedding
    config = t5.t5_config(weights, path)
    bias = "encoder.block.{}.layer.0.SelfAttention.relative_attention_bias.weight"
    per_layer = config.num_layers > 1 and all(bias.format(i) in weights for i in range(config.num_layers))
    with torch.device("meta"):
        if per_layer:
            fields = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_heads",
                      "relative_attention_num_buckets", "feed_forward_proj")
            model: Any = UMT5EncoderModel(UMT5Config(is_encoder_decoder=False, use_cache=False,
                                                     **{name: getattr(config, name) for name in fields}))
        else:
            model = T5EncoderModel(config)
    weights_fit.load_strictly(model, weights, path, "Pile-T5 text encoder", assign=True)
    model.encoder.embed_tokens.weight = model.shared.weight
    return model.eval()


def tokenize_auraflow(tokenizer: Any, text: str, *, min_length: int = MIN_LENGTH) -> list[tuple[int, float]]:
    """``text`` as ``[(token id, weight)]`` the way ComfyUI's AuraFlow tokenizer makes it: each word alone without
    special tokens, one end token, padding with id 1 to ``min_length``."""
    tokens: list[tuple[int, float]] = []
    for piece, weight in parse_weights(text):
        for word in piece.replace("\n", " ").split(" "):
            if word:
                ids = tokenizer(word, add_special_tokens=False)["input_ids"]
                tokens.extend((int(token), weight) for token in ids)
    tokens.append((END_ID, 1.0))
    tokens.extend([(PAD_ID, 1.0)] * max(0, min_length - len(tokens)))
    return tokens


def encode_auraflow(model: Any, tokenizer: Any, text: str, *, min_length: int = MIN_LENGTH) -> Tensor:
    """The conditioning ``[1, tokens, d_model]`` of ``text`` through the Pile-T5 ``model``: attention up to the end
    token, padded rows zeroed, weights as ComfyUI (``empty + (row - empty) · weight``, ``empty`` the end token
    alone, padded the same way)."""
    return encode_auraflow_tokens(model, tokenize_auraflow(tokenizer, text, min_length=min_length))


@torch.no_grad()
def encode_auraflow_tokens(model: Any, tokens: list[tuple[int, float]]) -> Tensor:
    """Tokens from :func:`tokenize_auraflow` through ``model``: ``[1, len(tokens), d_model]``."""
    device = next(model.parameters()).device
    ids = torch.tensor([[token for token, _ in tokens]], dtype=torch.long, device=device)
    hidden = _masked_hidden(model, ids)
    weights = torch.tensor([weight for _, weight in tokens], dtype=hidden.dtype, device=device)
    if bool((weights != 1.0).any()):
        empty_ids = torch.full_like(ids, PAD_ID)
        empty_ids[0, 0] = END_ID
        empty = _masked_hidden(model, empty_ids)
        hidden = empty + (hidden - empty) * weights[None, :, None]
    return hidden


def _masked_hidden(model: Any, ids: Tensor) -> Tensor:
    """Attention over the tokens up to and including the first end token; the rows after it zeroed."""
    is_end = (ids == END_ID).int()
    after_end = (is_end.cumsum(dim=1) - is_end) > 0
    mask = (~after_end).long()
    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    return hidden * mask[..., None].to(hidden.dtype)


def predict(module: Any, x: Tensor, timestep: Tensor, context: Tensor, *, context_mask: Tensor | None = None,
            ) -> Tensor:
    """The flow velocity ``[B, C, H, W]`` (float32) of AuraFlow's ``module`` for the network input ``x`` at
    ComfyUI's ``timestep`` (``sigma · 1.0``, shape ``[B]``) and text tokens ``context`` ``[B, T, width]``.
    ``context_mask`` (``[B, T]``, 1 = keep) zeroes the masked rows, as ComfyUI's encoder already did; AuraFlow's
    attention itself takes no mask."""
    from visionatrix.diffusion.checkpoints import fp8

    dtype = fp8.compute_dtype_of(module)  # not the first parameter's: weights may be stored in fp8
    batch, _, height, width = x.shape
    patch = module.config.patch_size
    if context_mask is not None:
        context = context * context_mask[..., None].to(context.dtype)
    hidden = _embed_patches(module, x.to(dtype), patch)
    temb = module.time_step_proj(module.time_step_embed(timestep.to(x.device).float()).to(dtype))
    text = module.context_embedder(context.to(dtype))
    text = torch.cat([module.register_tokens.to(text.dtype).expand(batch, -1, -1), text], dim=1)
    for block in module.joint_transformer_blocks:
        text, hidden = block(hidden_states=hidden, encoder_hidden_states=text, temb=temb)
    if len(module.single_transformer_blocks):
        joined = torch.cat([text, hidden], dim=1)
        for block in module.single_transformer_blocks:
            joined = block(hidden_states=joined, temb=temb)
        hidden = joined[:, text.shape[1]:]
    hidden = module.proj_out(module.norm_out(hidden, temb))
    rows, columns = -(-height // patch), -(-width // patch)
    out_channels = module.config.out_channels
    hidden = hidden.reshape(batch, rows, columns, patch, patch, out_channels)
    out = torch.einsum("nhwpqc->nchpwq", hidden).reshape(batch, out_channels, rows * patch, columns * patch)
    return out[:, :, :height, :width].float()


def _embed_patches(module: Any, x: Tensor, patch: int) -> Tensor:
    """Patch tokens plus AuraFlow's learned positions, placed as ComfyUI's MMDiT places them."""
    batch, channels, height, width = x.shape
    x = torch.nn.functional.pad(x, (0, -width % patch, 0, -height % patch), mode="circular")
    rows, columns = x.shape[-2] // patch, x.shape[-1] // patch
    x = x.view(batch, channels, rows, patch, columns, patch).permute(0, 2, 4, 1, 3, 5).flatten(-3).flatten(1, 2)
    tokens = module.pos_embed.proj(x)
    table = module.pos_embed.pos_embed
    side = math.isqrt(table.shape[1])
    grid = table.reshape(1, side, side, -1).to(tokens.dtype)
    if max(rows, columns) > side:
        side = max(rows, columns)
        grid = torch.nn.functional.interpolate(grid.movedim(-1, 1), (side, side), mode="bilinear").movedim(1, -1)
    top, left = (side - rows) // 2, (side - columns) // 2
    return tokens + grid[:, top:top + rows, left:left + columns].reshape(1, rows * columns, -1)
