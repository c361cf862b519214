"""Tiny random-weight HunyuanDiT all-in-one files in ComfyUI's layout, and tiny tokenizers.

- Transformers (``VERSIONS``): diffusers ``HunyuanDiT2DModel`` built from tiny configs (width 64, 4 heads of 16,
  4 blocks, MLP 160, mT5 width 32, pooled 48) with the real text lengths (77 BERT + 256 mT5 positions), every
  parameter perturbed, written back in Tencent's layout (``blocks.N.attn1.Wqkv``, ``attn2.kv_proj``, swapped
  ``norm2``/``norm3``, ``default_modulation``, ``final_layer.adaLN_modulation`` as (shift, scale), ...) by this
  module's own diffusers->Tencent map: ``v1.2`` (pooled text only) and ``v1.1`` (image meta size and style).
- All-in-one file: the transformer under ``model.``, a tiny BERT under ``text_encoders.hydit_clip.transformer.bert.``
  (with a pooler, as Tencent's file has), a tiny gated-GELU T5 (mT5's architecture) under ``text_encoders.mt5xl.
  transformer.`` (``shared`` and the tied ``encoder.embed_tokens`` both, as ``state_dict()`` saves them), the tiny
  tokenizer's vocabulary as a serialized SentencePiece ``ModelProto`` under ``text_encoders.mt5xl.spiece_model``
  (uint8, written here field by field from SentencePiece's schema) and a tiny 4-channel VAE (LDM layout) under
  ``vae.``.
- Tokenizers: a BERT ``vocab.txt`` (``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2, ``[SEP]`` 3, ``[MASK]`` 4, words, ``##``
  pieces, CJK characters) and the tiny T5 Unigram ``tokenizer.json`` of :mod:`tests.sd3_fixtures` (mT5's special ids
  are T5's).
"""

from __future__ import annotations

import functools
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from tests.diffusion_fixtures import VAE, _perturbed, vae_to_ldm
from tests.sd3_fixtures import TOKENIZER_VOCAB, build_t5, t5_file_weights

SEED = 2031
BERT_DIMS = {"vocab_size": 40, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 1,
             "intermediate_size": 96, "max_position_embeddings": 128, "type_vocab_size": 2}
T5_WIDTH = 512
"""The tiny T5 of :mod:`tests.sd3_fixtures` (512 wide) stands in for mT5-XL (2048)."""
DIT_BASE: dict[str, Any] = {
    "num_attention_heads": 4, "attention_head_dim": 16, "in_channels": 4, "patch_size": 2, "sample_size": 16,
    "hidden_size": 64, "num_layers": 4, "mlp_ratio": 2.5, "learn_sigma": True,
    "cross_attention_dim": BERT_DIMS["hidden_size"], "cross_attention_dim_t5": T5_WIDTH, "pooled_projection_dim": 48,
    "text_len": 77, "text_len_t5": 256,
}
VERSIONS: dict[str, dict[str, Any]] = {
    "v1.2": {**DIT_BASE, "use_style_cond_and_image_meta_size": False},
    "v1.1": {**DIT_BASE, "use_style_cond_and_image_meta_size": True},
}
BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "cat", "##s", "red", "dog", "on",
              "the", "table", "blue", "sky", ",", "红", "色", "猫", "一", "只"]


@dataclass
class TinyHunyuan:
    """A tiny all-in-one HunyuanDiT file's tensors and the modules they were made from."""

    version: str
    state_dict: dict[str, torch.Tensor]
    transformer: torch.nn.Module
    components: dict[str, torch.nn.Module] = field(default_factory=dict)


def build_transformer(version: str, *, seed: int = SEED) -> torch.nn.Module:
    """The tiny diffusers ``HunyuanDiT2DModel`` of ``version``, perturbed, eval mode."""
    from diffusers import HunyuanDiT2DModel

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _perturbed(HunyuanDiT2DModel(**VERSIONS[version]), torch.Generator().manual_seed(seed))
    return model.eval()


def build_bert(*, seed: int = SEED) -> torch.nn.Module:
    """The tiny ``BertModel`` (with its pooler), perturbed, eval mode."""
    from transformers import BertConfig, BertModel

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BertModel(BertConfig(**BERT_DIMS, hidden_act="gelu", layer_norm_eps=1e-12))
        return _perturbed(model, torch.Generator().manual_seed(seed)).eval()


def build_checkpoint(version: str, *, seed: int = SEED) -> TinyHunyuan:
    """The tiny all-in-one file of ``version`` (see the module docstring)."""
    from diffusers import AutoencoderKL

    transformer = build_transformer(version, seed=seed)
    bert = build_bert(seed=seed + 1)
    mt5 = build_t5(seed=seed + 2)
    with torch.random.fork_rng():
        torch.manual_seed(seed + 3)
        vae = _perturbed(AutoencoderKL(**VAE), torch.Generator().manual_seed(seed + 3)).eval()
    state = {"model." + key: value for key, value in tencent_from_diffusers(transformer.state_dict()).items()}
    state |= {"text_encoders.hydit_clip.transformer.bert." + key: value for key, value in bert.state_dict().items()
              if not key.endswith(("position_ids", "token_type_ids"))}
    state |= {"text_encoders.mt5xl.transformer." + key: value for key, value in t5_file_weights(mt5).items()}
    state["text_encoders.mt5xl.transformer.encoder.embed_tokens.weight"] = mt5.shared.weight
    state["text_encoders.mt5xl.spiece_model"] = torch.tensor(list(spiece_model_bytes()), dtype=torch.uint8)
    state |= {"vae." + key: value for key, value in vae_to_ldm(vae.state_dict()).items()}
    state = {key: value.detach().contiguous().clone() for key, value in state.items()}
    return TinyHunyuan(version, state, transformer, {"hydit_clip": bert, "mt5xl": mt5, "vae": vae})


@functools.cache
def cached_checkpoint(version: str) -> TinyHunyuan:
    """:func:`build_checkpoint` with the default seed, built once per process (treat it as read-only)."""
    return build_checkpoint(version)


def write(state_dict: dict[str, torch.Tensor], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state_dict, str(path))
    return path


def write_bert_vocab(directory: Path) -> Path:
    """The tiny BERT vocabulary as ``directory/vocab.txt``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "vocab.txt"
    path.write_text("\n".join(BERT_VOCAB) + "\n", encoding="utf-8")
    return path


def _swap_halves(value: torch.Tensor) -> torch.Tensor:
    first, second = value.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


TENCENT_FIXED = {
    "pos_embed.proj": "x_embedder.proj", "text_embedder.linear_1": "mlp_t5.0", "text_embedder.linear_2": "mlp_t5.2",
    "time_extra_emb.timestep_embedder.linear_1": "t_embedder.mlp.0",
    "time_extra_emb.timestep_embedder.linear_2": "t_embedder.mlp.2",
    "time_extra_emb.extra_embedder.linear_1": "extra_embedder.0",
    "time_extra_emb.extra_embedder.linear_2": "extra_embedder.2",
    "time_extra_emb.pooler.q_proj": "pooler.q_proj", "time_extra_emb.pooler.k_proj": "pooler.k_proj",
    "time_extra_emb.pooler.v_proj": "pooler.v_proj", "time_extra_emb.pooler.c_proj": "pooler.c_proj",
    "time_extra_emb.style_embedder": "style_embedder", "proj_out": "final_layer.linear",
    "norm_out.linear": "final_layer.adaLN_modulation.1",
}
TENCENT_BLOCK = {
    "attn1.norm_q": "attn1.q_norm", "attn1.norm_k": "attn1.k_norm", "attn1.to_out.0": "attn1.out_proj",
    "attn2.to_q": "attn2.q_proj", "attn2.norm_q": "attn2.q_norm", "attn2.norm_k": "attn2.k_norm",
    "attn2.to_out.0": "attn2.out_proj", "norm1.norm": "norm1", "norm1.linear": "default_modulation.1",
    "norm2": "norm3", "norm3": "norm2", "ff.net.0.proj": "mlp.fc1", "ff.net.2": "mlp.fc2",
    "skip_norm": "skip_norm", "skip_linear": "skip_linear",
}


def tencent_from_diffusers(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers ``HunyuanDiT2DModel`` keys -> Tencent's (no prefix): q/k/v and k/v fused, the final modulation
    back to (shift, scale)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        module, _, param = key.rpartition(".")
        if key in ("text_embedding_padding", "time_extra_emb.pooler.positional_embedding"):
            out[key.removeprefix("time_extra_emb.")] = value
        elif module in TENCENT_FIXED:
            out[f"{TENCENT_FIXED[module]}.{param}"] = _swap_halves(value) if module == "norm_out.linear" else value
        elif m := re.match(r"blocks\.(\d+)\.(.*)$", module):
            base, inner = f"blocks.{m.group(1)}.", m.group(2)
            if inner in ("attn1.to_q", "attn1.to_k", "attn1.to_v"):
                out[f"{base}attn1.Wqkv.{param}"] = torch.cat([weights[f"{base}attn1.to_{p}.{param}"] for p in "qkv"])
            elif inner in ("attn2.to_k", "attn2.to_v"):
                out[f"{base}attn2.kv_proj.{param}"] = torch.cat([weights[f"{base}attn2.to_{p}.{param}"] for p in "kv"])
            elif inner in TENCENT_BLOCK:
                out[f"{base}{TENCENT_BLOCK[inner]}.{param}"] = value
            else:
                raise KeyError(f"no Tencent name for {key!r}")
        else:
            raise KeyError(f"no Tencent name for {key!r}")
    return out


SPIECE_CONTROL = ("<pad>", "</s>")
SPIECE_UNKNOWN = "<unk>"


def spiece_model_bytes() -> bytes:
    """The tiny T5 vocabulary (:data:`tests.sd3_fixtures.TOKENIZER_VOCAB`) as a SentencePiece ``ModelProto``: pieces
    (piece, score, type: control 3 / unknown 2 / normal 1), a Unigram trainer spec (model_type 1, unk_id 2) and an
    identity normalizer spec (no character map, dummy prefix and whitespace removal on)."""
    out = b""
    for piece, score in TOKENIZER_VOCAB:
        kind = 3 if piece in SPIECE_CONTROL else 2 if piece == SPIECE_UNKNOWN else 1
        message = _len_field(1, piece.encode("utf-8")) + _key(2, 5) + struct.pack("<f", score) + _key(3, 0) + \
            _varint(kind)
        out += _len_field(1, message)
    out += _len_field(2, _key(3, 0) + _varint(1) + _key(40, 0) + _varint(2))
    out += _len_field(3, _len_field(1, b"identity") + _key(3, 0) + _varint(1) + _key(4, 0) + _varint(1))
    return out


def _varint(value: int) -> bytes:
    out = b""
    while True:
        byte, value = value & 0x7F, value >> 7
        out += bytes([byte | (0x80 if value else 0)])
        if not value:
            return out


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _len_field(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint(len(payload)) + payload
