"""Tiny random-weight SD3/SD3.5 transformers, T5 encoders and all-in-one SD3 files in the real layouts.

- Transformers (``KINDS``): diffusers ``SD3Transformer2DModel`` built from tiny configs obeying the family's rule
  (heads of width 64: 2 layers, 2 heads, hidden 128), every parameter and ``pos_embed`` perturbed, written in the
  MMDiT single-file layout (``joint_blocks.N.x_block.attn.qkv``, ...) by our own diffusers->MMDiT reverse map:
  ``sd3_medium`` (no query/key norms), ``sd35_large`` (RMS query/key norms), ``sd35_medium`` (norms plus the
  second image attention ``attn2`` in layer 0).
- T5: a tiny gated-GELU (v1.1) ``T5EncoderModel`` in its own layout (``shared.weight``, ``encoder.block.N...``,
  as ComfyUI's ``t5xxl_fp16.safetensors``, without the tied ``encoder.embed_tokens``).
- A tiny T5 tokenizer: a ``tokenizers`` Unigram vocabulary written as ``tokenizer.json`` (no training, no
  SentencePiece package): T5's special ids (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2), a few words and single letters.
- All-in-one files: the transformer under ``model.diffusion_model.``, CLIP-L / CLIP-G (transformers' layout) under
  ``text_encoders.clip_l.transformer.`` / ``text_encoders.clip_g.transformer.``, T5 under
  ``text_encoders.t5xxl.transformer.``, the 16-channel VAE (no quant convs) under ``first_stage_model.``.

Widths fit together as the real ones do: the transformer's context width is T5's ``d_model`` (512; real 4096),
CLIP-L + CLIP-G (64 + 320) fit inside it once padded, and the pooled width is their sum (384; real 768 + 1280).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from tests.diffusion_fixtures import CLIP_L, OPEN_CLIP_G, _clip_text_model, _perturbed, vae_to_ldm

SEED = 2027
T5_DIMS = {"d_model": 512, "num_heads": 4, "d_kv": 32, "d_ff": 128, "num_layers": 2}
POOLED = CLIP_L["hidden_size"] + OPEN_CLIP_G["hidden_size"]
SD3_BASE: dict[str, Any] = {
    "sample_size": 32, "patch_size": 2, "in_channels": 16, "out_channels": 16, "num_layers": 2,
    "attention_head_dim": 64, "num_attention_heads": 2, "joint_attention_dim": T5_DIMS["d_model"],
    "caption_projection_dim": 128, "pooled_projection_dim": POOLED, "pos_embed_max_size": 16,
}
KINDS: dict[str, dict[str, Any]] = {
    "sd3_medium": {**SD3_BASE, "qk_norm": None, "dual_attention_layers": ()},
    "sd35_large": {**SD3_BASE, "qk_norm": "rms_norm", "dual_attention_layers": ()},
    "sd35_medium": {**SD3_BASE, "qk_norm": "rms_norm", "dual_attention_layers": (0,), "pos_embed_max_size": 24},
}
VAE16 = {"block_out_channels": (32, 32, 32, 32), "layers_per_block": 1, "latent_channels": 16,
         "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4,
         "use_quant_conv": False, "use_post_quant_conv": False, "scaling_factor": 1.5305, "shift_factor": 0.0609}
TOKENIZER_WORDS = ("a", "photo", "of", "cat", "red", "dog", "on", "the", "table", "blue", "sky")
TOKENIZER_VOCAB: list[tuple[str, float]] = [
    ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0),
    *((f"▁{word}", -3.0 - len(word) / 10) for word in TOKENIZER_WORDS),
    *((chr(c), -6.0) for c in range(ord("a"), ord("z") + 1)),
]
T5_VOCAB = 64
"""The tiny T5's vocabulary (larger than the tiny tokenizer's, as the real 32128 > 32100)."""


@dataclass
class TinySD3:
    """A tiny SD3 file's tensors and the modules they were made from."""

    kind: str
    state_dict: dict[str, torch.Tensor]
    transformer: torch.nn.Module
    components: dict[str, torch.nn.Module] = field(default_factory=dict)


def build_transformer(kind: str, *, seed: int = SEED) -> torch.nn.Module:
    """The tiny diffusers ``SD3Transformer2DModel`` of ``kind`` (one of :data:`KINDS`), perturbed, eval mode."""
    from diffusers import SD3Transformer2DModel

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # the module's own initialisation too: the same seed, the same weights
        torch.manual_seed(seed)
        model = _perturbed(SD3Transformer2DModel(**KINDS[kind]), generator)
    with torch.no_grad():
        model.pos_embed.pos_embed.add_(0.05 * torch.randn(model.pos_embed.pos_embed.shape, generator=generator))
    return model.eval()


def build_t5(*, seed: int = SEED) -> torch.nn.Module:
    """The tiny gated-GELU ``T5EncoderModel``, perturbed, eval mode."""
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=T5_VOCAB, feed_forward_proj="gated-gelu", is_encoder_decoder=False,
                      use_cache=False, **T5_DIMS)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _perturbed(T5EncoderModel(config), torch.Generator().manual_seed(seed)).eval()


def t5_file_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s weights as ComfyUI's ``t5xxl_fp16.safetensors`` holds them (the tied copy left out)."""
    return {key: value.detach().clone().contiguous() for key, value in model.state_dict().items()
            if key != "encoder.embed_tokens.weight"}


def build_checkpoint(kind: str, *, all_in_one: bool = False, seed: int = SEED) -> TinySD3:
    """The tiny SD3 file ``kind``: the transformer alone (no prefix) or an all-in-one file with every component."""
    from diffusers import AutoencoderKL

    transformer = build_transformer(kind, seed=seed)
    mmdit = mmdit_from_diffusers(transformer.state_dict())
    if not all_in_one:
        return TinySD3(kind, _detached(mmdit), transformer)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.random.fork_rng():
        torch.manual_seed(seed + 1)
        clip_l = _perturbed(_clip_text_model(CLIP_L, projection=False), generator).eval()
        clip_g = _perturbed(_clip_text_model(OPEN_CLIP_G, projection=True), generator).eval()
        vae = _perturbed(AutoencoderKL(**VAE16), generator).eval()
    t5 = build_t5(seed=seed + 2)
    state = {"model.diffusion_model." + key: value for key, value in mmdit.items()}
    state |= {"text_encoders.clip_l.transformer.text_model." + k: v for k, v in clip_l.state_dict().items()}
    # ComfyUI saves CLIP-L with a text projection (SD3/Flux do not use it): an identity, as ComfyUI fills it
    state["text_encoders.clip_l.transformer.text_projection.weight"] = torch.eye(CLIP_L["hidden_size"])
    state |= {"text_encoders.clip_g.transformer." + k: v for k, v in clip_g.state_dict().items()}
    state |= {"text_encoders.t5xxl.transformer." + k: v for k, v in t5_file_weights(t5).items()}
    state |= {"first_stage_model." + k: v for k, v in vae_to_ldm(vae.state_dict()).items()}
    state = {key: value for key, value in state.items() if not key.endswith("position_ids")}
    return TinySD3(kind, _detached(state), transformer,
                   {"clip_l": clip_l, "clip_g": clip_g, "t5xxl": t5, "vae": vae})


@functools.cache
def cached_checkpoint(kind: str, all_in_one: bool = False) -> TinySD3:
    """:func:`build_checkpoint` with the default seed, built once per process (treat it as read-only)."""
    return build_checkpoint(kind, all_in_one=all_in_one)


def write(state_dict: dict[str, torch.Tensor], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state_dict, str(path))
    return path


def write_tokenizer(directory: Path) -> Path:
    """The tiny T5 tokenizer as ``directory/tokenizer.json`` (T5's normalisation aside, the real file's shape)."""
    from transformers import T5Tokenizer

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tokenizer.json"
    T5Tokenizer(vocab=TOKENIZER_VOCAB, extra_ids=0).backend_tokenizer.save(str(path))
    return path


def _detached(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().contiguous().clone() for key, value in state.items()}


def _swap_halves(value: torch.Tensor) -> torch.Tensor:
    """diffusers keeps a pre-only modulation as (scale, shift), MMDiT as (shift, scale)."""
    first, second = value.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


MMDIT_FIXED = {
    "pos_embed.pos_embed": "pos_embed", "pos_embed.proj": "x_embedder.proj",
    "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
    "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
    "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
    "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
    "context_embedder": "context_embedder", "proj_out": "final_layer.linear",
    "norm_out.linear": "final_layer.adaLN_modulation.1",
}
MMDIT_BLOCK = {
    "attn.norm_q": "x_block.attn.ln_q", "attn.norm_k": "x_block.attn.ln_k",
    "attn.norm_added_q": "context_block.attn.ln_q", "attn.norm_added_k": "context_block.attn.ln_k",
    "attn.to_out.0": "x_block.attn.proj", "attn.to_add_out": "context_block.attn.proj",
    "attn2.norm_q": "x_block.attn2.ln_q", "attn2.norm_k": "x_block.attn2.ln_k", "attn2.to_out.0": "x_block.attn2.proj",
    "norm1.linear": "x_block.adaLN_modulation.1", "norm1_context.linear": "context_block.adaLN_modulation.1",
    "ff.net.0.proj": "x_block.mlp.fc1", "ff.net.2": "x_block.mlp.fc2",
    "ff_context.net.0.proj": "context_block.mlp.fc1", "ff_context.net.2": "context_block.mlp.fc2",
}
MMDIT_QKV = {"attn.to_": ("x_block.attn.qkv", ""), "attn.add_": ("context_block.attn.qkv", "_proj"),
             "attn2.to_": ("x_block.attn2.qkv", "")}


def mmdit_from_diffusers(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers ``SD3Transformer2DModel`` keys -> MMDiT single-file keys (no prefix): q/k/v fused, the last
    layer's context modulation and the final modulation back to (shift, scale)."""
    last = max(int(m.group(1)) for key in weights if (m := re.match(r"transformer_blocks\.(\d+)\.", key)))
    out: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        module, _, param = key.rpartition(".")
        if key == "pos_embed.pos_embed":
            out["pos_embed"] = value
        elif module in MMDIT_FIXED:
            swap = module == "norm_out.linear"
            out[f"{MMDIT_FIXED[module]}.{param}"] = _swap_halves(value) if swap else value
        elif m := re.match(r"transformer_blocks\.(\d+)\.(.*)$", module):
            index, inner = int(m.group(1)), m.group(2)
            base = f"joint_blocks.{index}."
            qkv = next(((source, target, suffix) for source, (target, suffix) in MMDIT_QKV.items()
                        if inner in (f"{source}q{suffix}", f"{source}k{suffix}", f"{source}v{suffix}")), None)
            if qkv is not None:
                source, target, suffix = qkv
                parts = [weights[f"transformer_blocks.{index}.{source}{p}{suffix}.{param}"] for p in "qkv"]
                out[f"{base}{target}.{param}"] = torch.cat(parts)
            elif inner in MMDIT_BLOCK:
                swap = inner == "norm1_context.linear" and index == last
                out[f"{base}{MMDIT_BLOCK[inner]}.{param}"] = _swap_halves(value) if swap else value
            else:
                raise KeyError(f"no MMDiT name for {key!r}")
        else:
            raise KeyError(f"no MMDiT name for {key!r}")
    return out
