"""Tiny random-weight AuraFlow files in the real layout, and a tiny LLaMA-style tokenizer.

- Transformer: a diffusers ``AuraFlowTransformer2DModel`` obeying the family's rules (heads of width 256: hidden 512
  = 2 heads, one double and one single layer, text width 64, an 8 x 8 learned position grid), every parameter
  perturbed, written under AuraFlow's own names by our own diffusers->AuraFlow reverse map
  (:func:`aura_from_diffusers`, written independently of the loader's ``auraflow_keys``).
- Pile-T5: a tiny gated-GELU ``UMT5EncoderModel`` (a relative attention bias in every block, as Pile-T5-XL).
- All-in-one file (:func:`build_checkpoint`): the transformer under ``model.diffusion_model.``, Pile-T5 under
  ``text_encoders.pile_t5xl.transformer.``, a tiny 4-channel VAE (LDM names) under ``vae.``.
- Tokenizer: a ``tokenizers`` Unigram vocabulary with LLaMA's special ids (``<unk>`` 0, ``<s>`` 1, ``</s>`` 2) and
  its "▁" word prefix, written as ``tokenizer.json``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tests.diffusion_fixtures import VAE, _perturbed, vae_to_ldm

SEED = 2028
TINY: dict[str, Any] = {
    "sample_size": 8, "patch_size": 2, "in_channels": 4, "out_channels": 4, "num_mmdit_layers": 1,
    "num_single_dit_layers": 1, "attention_head_dim": 256, "num_attention_heads": 2, "joint_attention_dim": 64,
    "caption_projection_dim": 512, "pos_embed_max_size": 64,
}
REAL: dict[str, Any] = {
    "sample_size": 64, "patch_size": 2, "in_channels": 4, "out_channels": 4, "num_mmdit_layers": 4,
    "num_single_dit_layers": 32, "attention_head_dim": 256, "num_attention_heads": 12, "joint_attention_dim": 2048,
    "caption_projection_dim": 3072, "pos_embed_max_size": 4096,
}
"""fal/AuraFlow-v0.3's published transformer config."""
PILE_T5 = {"vocab_size": 48, "d_model": 64, "num_heads": 2, "d_kv": 32, "d_ff": 96, "num_layers": 2}
TOKENIZER_WORDS = ("a", "photo", "of", "cat", "red", "dog", "on", "the", "table")
TOKENIZER_VOCAB: list[tuple[str, float]] = [
    ("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0), ("▁", -2.0),
    *((f"▁{word}", -3.0 - len(word) / 10) for word in TOKENIZER_WORDS),
    *((chr(c), -6.0) for c in range(ord("a"), ord("z") + 1)),
]

TOP = {"register_tokens": "register_tokens", "pos_embed.pos_embed": "positional_encoding",
       "pos_embed.proj": "init_x_linear", "context_embedder": "cond_seq_linear",
       "time_step_proj.linear_1": "t_embedder.mlp.0", "time_step_proj.linear_2": "t_embedder.mlp.2",
       "proj_out": "final_linear", "norm_out.linear": "modF.1"}
BLOCK_PARTS = {"norm1.linear": "modX.1", "norm1_context.linear": "modC.1", "attn.to_q": "attn.w2q",
               "attn.to_k": "attn.w2k", "attn.to_v": "attn.w2v", "attn.to_out.0": "attn.w2o",
               "attn.add_q_proj": "attn.w1q", "attn.add_k_proj": "attn.w1k", "attn.add_v_proj": "attn.w1v",
               "attn.to_add_out": "attn.w1o", "ff.": "mlpX.", "ff_context.": "mlpC."}
SINGLE_PARTS = {"norm1.linear": "modCX.1", "attn.to_q": "attn.w1q", "attn.to_k": "attn.w1k",
                "attn.to_v": "attn.w1v", "attn.to_out.0": "attn.w1o", "ff.": "mlp."}
FF_PARTS = {"linear_1": "c_fc1", "linear_2": "c_fc2", "out_projection": "c_proj"}


@dataclass
class TinyAuraFlow:
    state_dict: dict[str, torch.Tensor]
    transformer: torch.nn.Module
    components: dict[str, torch.nn.Module] = field(default_factory=dict)


def build_transformer(config: dict[str, Any] | None = None, *, seed: int = SEED) -> torch.nn.Module:
    """The tiny diffusers AuraFlow transformer (``config`` overrides :data:`TINY`), perturbed, eval mode."""
    from diffusers import AuraFlowTransformer2DModel

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AuraFlowTransformer2DModel(**{**TINY, **(config or {})})
    return _perturbed(model, torch.Generator().manual_seed(seed)).eval()


def build_pile_t5(*, seed: int = SEED) -> torch.nn.Module:
    """The tiny Pile-T5 (UMT5, gated GELU) encoder, perturbed, eval mode."""
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False, **PILE_T5)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _perturbed(UMT5EncoderModel(config), torch.Generator().manual_seed(seed)).eval()


def aura_from_diffusers(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers ``AuraFlowTransformer2DModel`` keys -> AuraFlow's own keys (no prefix); the final modulation's
    halves back to (shift, scale)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        if match := re.match(r"(joint|single)_transformer_blocks\.(\d+)\.(.+)$", key):
            kind, index, rest = match.groups()
            parts = BLOCK_PARTS if kind == "joint" else SINGLE_PARTS
            base = f"{'double' if kind == 'joint' else 'single'}_layers.{index}."
            ours = next(part for part in parts if rest.startswith(part))
            name = parts[ours] + rest[len(ours):]
            for diffusers_part, aura_part in FF_PARTS.items():
                name = name.replace(f".{diffusers_part}.", f".{aura_part}.")
            out[base + name] = value
            continue
        module, _, param = key.rpartition(".") if key != "register_tokens" else (key, "", "")
        if key == "pos_embed.pos_embed":
            module, param = key, ""
        name = TOP[module] + (f".{param}" if param else "")
        if module == "norm_out.linear":
            scale, shift = value.chunk(2)
            value = torch.cat([shift, scale])
        out[name] = value
    return {key: value.detach().clone().contiguous() for key, value in out.items()}


def build_checkpoint(*, all_in_one: bool = False, seed: int = SEED) -> TinyAuraFlow:
    """The tiny AuraFlow file: the transformer alone, or an all-in-one file with Pile-T5 and the VAE."""
    from diffusers import AutoencoderKL

    transformer = build_transformer(seed=seed)
    aura = aura_from_diffusers(transformer.state_dict())
    if not all_in_one:
        return TinyAuraFlow(aura, transformer)
    pile = build_pile_t5(seed=seed + 1)
    with torch.random.fork_rng():
        torch.manual_seed(seed + 2)
        vae = _perturbed(AutoencoderKL(**VAE), torch.Generator().manual_seed(seed + 2)).eval()
    state = {"model.diffusion_model." + key: value for key, value in aura.items()}
    state |= {"text_encoders.pile_t5xl.transformer." + key: value.detach().clone()
              for key, value in pile.state_dict().items() if key != "encoder.embed_tokens.weight"}
    state |= {"vae." + key: value.detach().clone() for key, value in vae_to_ldm(vae.state_dict()).items()}
    return TinyAuraFlow(state, transformer, {"pile_t5xl": pile, "vae": vae})


@functools.cache
def cached_checkpoint(all_in_one: bool = False) -> TinyAuraFlow:
    """:func:`build_checkpoint` with the default seed, built once per process (treat it as read-only)."""
    return build_checkpoint(all_in_one=all_in_one)


def write_tokenizer(directory: Path) -> Path:
    """The tiny LLaMA-style tokenizer as ``directory/tokenizer.json``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.Unigram(TOKENIZER_VOCAB, unk_id=0))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    path = directory / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def inputs(config: Any, *, height: int = 8, width: int = 8, batch: int = 2, tokens: int = 5,
           seed: int = 0) -> dict[str, torch.Tensor]:
    """Forward arguments for an AuraFlow transformer of ``config``: latents, text tokens, timesteps in 0..1."""
    generator = torch.Generator().manual_seed(seed)
    return {"hidden_states": torch.randn(batch, config.in_channels, height, width, generator=generator),
            "encoder_hidden_states": torch.randn(batch, tokens, config.joint_attention_dim, generator=generator),
            "timestep": torch.tensor([0.93, 0.21][:batch])}
