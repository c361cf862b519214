"""The T5 text encoder of SD3 and Flux (T5-XXL v1.1) from its file, as transformers' ``T5EncoderModel``, and a
prompt through it as ComfyUI encodes it.

Files: ComfyUI's ``t5xxl_fp16.safetensors`` (and ``t5xxl_fp8_e4m3fn``) are transformers' own encoder layout
(``shared.weight``, ``encoder.block.N.layer.0.SelfAttention.{q,k,v,o}``, ``...relative_attention_bias`` in block 0,
``encoder.block.N.layer.1.DenseReluDense.{wi_0,wi_1,wo}``, ``encoder.final_layer_norm``); all-in-one SD3/Flux files
keep it under ``text_encoders.t5xxl.transformer.``; a full T5 (``decoder.*``, ``lm_head``) gives its encoder.
The config comes from shapes: vocabulary and ``d_model`` from ``shared``, heads from the relative attention bias
(``[buckets, heads]``), ``d_kv`` = q's output / heads, ``d_ff`` from ``wi``, layers counted; ``wi_0``/``wi_1``
(gated GELU) mean T5 v1.1, a single ``wi`` the original ReLU T5. ComfyUI's ``scaled_fp8`` files are dequantized
before building (:mod:`visionatrix.diffusion.dit.loading`); the builder refuses scale tensors it is handed.

Encoding (``encode_t5``) follows ComfyUI's T5 tokenizer for SD3/Flux: the prompt's weighted pieces are split on
spaces and each word is tokenized alone (no end token), one end token (``</s>``, 1) closes the sequence, which is
then padded with ``<pad>`` (0) to ``min_length`` (SD3 77, Flux 256: ``MIN_LENGTH``); there is no 77-token chunking
and no attention mask (padding is attended, as ComfyUI). The output is the last hidden state (after the final norm),
``[1, tokens, d_model]``. Weights: ComfyUI's rule for every text encoder — when any token's weight differs from 1,
each row becomes ``empty + (row - empty) · weight`` where ``empty`` is the encoding of the empty sequence
(``</s>`` then padding) of the same length.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from visionatrix.diffusion.checkpoints import weights_fit
from visionatrix.diffusion.text.weights import parse_weights
from visionatrix.errors import ModelFileError

if TYPE_CHECKING:
    from torch import Tensor

PREFIXES = ("", "text_encoders.t5xxl.transformer.", "t5xxl.transformer.")
"""Where T5's weights lie: alone (``t5xxl_fp16.safetensors``) or inside an all-in-one SD3/Flux file."""
MARKER = "encoder.block.0.layer.0.SelfAttention.q.weight"
IGNORED_PREFIXES = ("decoder.", "lm_head.")
"""A full encoder-decoder T5 file: only its encoder is used."""
MIN_LENGTH = {"sd3": 77, "flux": 256}
"""ComfyUI pads the T5 tokens of SD3 prompts to 77, of Flux prompts to 256 (longer prompts are not cut)."""
END_ID = 1
PAD_ID = 0
SCALED_FP8_KEY = "scaled_fp8"


def t5_prefix(keys: Mapping[str, Any] | Any, path: object = "<state dict>") -> str:
    """The key prefix under which ``keys`` hold a T5 encoder; :class:`ModelFileError` when they hold none."""
    found = next((prefix for prefix in PREFIXES if prefix + MARKER in keys), None)
    if found is None:
        sample = ", ".join(sorted(keys)[:3]) if keys else "no tensors"
        raise ModelFileError(path, f"not a T5 text encoder: no {MARKER} (alone or under "
                                   f"text_encoders.t5xxl.transformer.); found {len(keys)} tensors ({sample}, ...)")
    return found


def t5_config(shapes: Mapping[str, Any], path: object = "<state dict>") -> Any:
    """The ``T5Config`` of T5 encoder weights (keys without prefix, values with ``.shape`` or shapes)."""
    from transformers import T5Config

    def shape(key: str) -> tuple[int, ...]:
        if key not in shapes:
            raise ModelFileError(path, f"T5 weight {key!r} is missing")
        value = shapes[key]
        return tuple(int(n) for n in getattr(value, "shape", value))

    embedding = "shared.weight" if "shared.weight" in shapes else "encoder.embed_tokens.weight"
    vocab, d_model = shape(embedding)
    buckets, heads = shape("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
    inner = shape("encoder.block.0.layer.0.SelfAttention.q.weight")[0]
    if inner % heads:
        raise ModelFileError(path, f"T5 attention width {inner} is not a multiple of its {heads} heads")
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in shapes
    d_ff = shape("encoder.block.0.layer.1.DenseReluDense." + ("wi_0" if gated else "wi") + ".weight")[0]
    regex = re.compile(r"encoder\.block\.(\d+)\.")
    layers = {int(m.group(1)) for key in shapes if (m := regex.match(key))}
    return T5Config(vocab_size=vocab, d_model=d_model, d_kv=inner // heads, d_ff=d_ff, num_layers=max(layers) + 1,
                    num_heads=heads, relative_attention_num_buckets=buckets,
                    feed_forward_proj="gated-gelu" if gated else "relu", is_encoder_decoder=False, use_cache=False)


def build_t5(state_dict: Mapping[str, Tensor], path: object = "<state dict>") -> Any:
    """The ``T5EncoderModel`` of a T5 file's tensors (alone or under ``text_encoders.t5xxl.transformer.``), in the
    stored dtype, on the CPU, in eval mode; strictly loaded."""
    from transformers import T5EncoderModel

    prefix = t5_prefix(state_dict, path)
    weights = {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}
    scaled = [key for key in weights if key.rsplit(".", 1)[-1] in (SCALED_FP8_KEY, "scale_weight", "scale_input")]
    if scaled:
        raise ModelFileError(path, f"ComfyUI scaled fp8 T5 ({scaled[0]!r}) must be dequantized before the "
                                   "module is built (checkpoints.fp8.dequantize_scaled_fp8, as dit.loading does)")
    if not prefix:  # a file of T5 alone: everything else in it must fit (a full T5's decoder is dropped)
        weights = {key: value for key, value in weights.items() if not key.startswith(IGNORED_PREFIXES)}
    embedding = weights.get("shared.weight", weights.get("encoder.embed_tokens.weight"))
    if embedding is None:
        raise ModelFileError(path, "T5 token embedding (shared.weight) is missing")
    weights["shared.weight"] = weights["encoder.embed_tokens.weight"] = embedding
    config = t5_config(weights, path)
    with torch.device("meta"):
        model: Any = T5EncoderModel(config)
    weights_fit.load_strictly(model, weights, path, "T5 text encoder", assign=True)
    model.encoder.embed_tokens.weight = model.shared.weight  # one tensor, as the tied module has
    return model.eval()


def tokenize_t5(tokenizer: Any, text: str, *, min_length: int = MIN_LENGTH["sd3"]) -> list[tuple[int, float]]:
    """``text`` as ``[(token id, weight)]`` the way ComfyUI's T5 tokenizer makes it (see the module docstring)."""
    tokens: list[tuple[int, float]] = []
    for piece, weight in parse_weights(text):
        for word in piece.replace("\n", " ").split(" "):
            if word:
                ids = tokenizer(word, add_special_tokens=False)["input_ids"]
                tokens.extend((int(token), weight) for token in ids)
    tokens.append((END_ID, 1.0))
    tokens.extend([(PAD_ID, 1.0)] * max(0, min_length - len(tokens)))
    return tokens


def encode_t5(model: Any, tokenizer: Any, text: str, *, min_length: int = MIN_LENGTH["sd3"]) -> torch.Tensor:
    """The conditioning ``[1, tokens, d_model]`` of ``text`` through the T5 encoder ``model`` (weights applied)."""
    return encode_t5_tokens(model, tokenize_t5(tokenizer, text, min_length=min_length))


@torch.no_grad()
def encode_t5_tokens(model: Any, tokens: list[tuple[int, float]]) -> torch.Tensor:
    """Tokens from :func:`tokenize_t5` through ``model``: ``[1, len(tokens), d_model]``."""
    device = next(model.parameters()).device
    ids = torch.tensor([[token for token, _ in tokens]], dtype=torch.long, device=device)
    hidden = model(input_ids=ids).last_hidden_state
    weights = torch.tensor([weight for _, weight in tokens], dtype=hidden.dtype, device=device)
    if bool((weights != 1.0).any()):
        empty_ids = torch.full_like(ids, PAD_ID)
        empty_ids[0, 0] = END_ID
        empty = model(input_ids=empty_ids).last_hidden_state
        hidden = empty + (hidden - empty) * weights[None, :, None]
    return hidden
