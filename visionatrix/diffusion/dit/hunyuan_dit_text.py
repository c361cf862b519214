"""HunyuanDiT's text encoders from its all-in-one file, and a prompt through them as ComfyUI encodes it.

Encoders (``build_hunyuan_text_encoders``):

- ``hydit_clip``: Chinese RoBERTa-wwm-ext-large, a BERT (transformers' ``BertModel`` layout, under
  ``text_encoders.hydit_clip.transformer.bert.``; a ``pooler``/``cls`` head or ``position_ids`` beside it is left out).
  Config from shapes: vocabulary and width from the word embeddings, positions and token types from theirs, layers
  counted, FFN from ``intermediate.dense``; heads of width 64 (16 for the real 1024); GELU, layer-norm eps 1e-12.
- ``mt5xl``: mT5-XL's encoder (transformers' T5 layout under ``text_encoders.mt5xl.transformer.``) as
  ``MT5EncoderModel``, its config read from shapes as :func:`visionatrix.diffusion.dit.t5.t5_config` reads T5's.

Encoding (``encode_hunyuan``), ComfyUI's ``HyditTokenizer``/``HyditModel``:

- BERT: each space-separated word tokenized alone, ``[CLS]`` + up to 510 tokens + ``[SEP]``, padded with ``[PAD]``
  to at least 77 (``BERT_MIN_LENGTH``; a longer prompt is not cut: up to 512, then further 512-token chunks whose
  outputs are concatenated); attention mask 1 up to and including ``[SEP]``; the last hidden state.
- mT5: each word tokenized alone (no end token), one ``</s>`` (1), ``<pad>`` (0) up to at least 256
  (``MT5_MIN_LENGTH``); mask 1 through ``</s>``; the last hidden state (after the final norm).
- Weights (``(word:1.3)``): ComfyUI's rule, per encoder: rows become ``empty + (row - empty) · weight`` where
  ``empty`` encodes ``[CLS] [SEP]`` / ``</s>`` and padding of the same length.

The result is the dict the transformer takes: ``encoder_hidden_states`` ``[1, T, 1024]``, ``text_embedding_mask``
``[1, T]``, ``encoder_hidden_states_t5`` ``[1, T5, 2048]``, ``text_embedding_mask_t5`` ``[1, T5]`` (masks int64).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

from visionatrix.diffusion.checkpoints import weights_fit
from visionatrix.diffusion.dit import t5
from visionatrix.diffusion.dit.hunyuan_dit import HunyuanInfo
from visionatrix.diffusion.text.weights import parse_weights
from visionatrix.errors import ModelFileError

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

BERT_HEAD_WIDTH = 64
BERT_MIN_LENGTH = 77
BERT_CHUNK_LENGTH = 512
"""ComfyUI's ``max_length`` for the BERT tokenizer: chunks of up to 512 tokens (the BERT's positions)."""
MT5_MIN_LENGTH = 256
BERT_INNER_PREFIXES = ("bert.", "")
BERT_IGNORED = ("pooler.", "cls.", "embeddings.position_ids", "visual.")
"""Keys of the CLIP file that the encoder does not use: BERT's pooler and masked-LM head, position ids."""

Tokens = list[tuple[int, float]]


def build_hunyuan_text_encoders(state_dict: Mapping[str, Tensor], info: HunyuanInfo, path: object = "<state dict>",
                                ) -> dict[str, Module]:
    """``{"hydit_clip": BertModel, "mt5xl": MT5EncoderModel}`` from an all-in-one file's tensors; a missing
    encoder is a :class:`ModelFileError`."""
    absent = [name for name in ("hydit_clip", "mt5xl") if name not in info.components]
    if absent:
        raise ModelFileError(path, f"no HunyuanDiT text encoder {', '.join(absent)} in this file (expected under "
                                   "text_encoders.hydit_clip.transformer. and text_encoders.mt5xl.transformer.)")
    return {"hydit_clip": build_bert(_under(state_dict, info.components["hydit_clip"]), path),
            "mt5xl": build_mt5(_under(state_dict, info.components["mt5xl"]), path)}


def build_bert(weights: Mapping[str, Tensor], path: object = "<state dict>") -> Module:
    """A ``BertModel`` (no pooler) from BERT weights (the component prefix removed; ``bert.`` inside or not)."""
    from transformers import BertConfig, BertModel

    inner = next((p for p in BERT_INNER_PREFIXES if p + "embeddings.word_embeddings.weight" in weights), None)
    if inner is None:
        raise ModelFileError(path, "HunyuanDiT CLIP (BERT) word embeddings (bert.embeddings.word_embeddings.weight) "
                                   "are missing")
    kept = {key[len(inner):]: value for key, value in weights.items() if key.startswith(inner)}
    kept = {key: value for key, value in kept.items() if not key.startswith(BERT_IGNORED)}

    def rows(key: str) -> int:
        if key not in kept:
            raise ModelFileError(path, f"HunyuanDiT CLIP (BERT) weight {inner + key!r} is missing")
        return int(kept[key].shape[0])

    vocab, hidden = (int(n) for n in kept["embeddings.word_embeddings.weight"].shape)
    if hidden % BERT_HEAD_WIDTH:
        raise ModelFileError(path, f"HunyuanDiT CLIP width {hidden} is not a multiple of the head width "
                                   f"{BERT_HEAD_WIDTH}")
    layers = {int(m.group(1)) for key in kept if (m := re.match(r"encoder\.layer\.(\d+)\.", key))}
    config = BertConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=max(layers) + 1 if layers else 0,
        num_attention_heads=hidden // BERT_HEAD_WIDTH,
        intermediate_size=rows("encoder.layer.0.intermediate.dense.weight"),
        max_position_embeddings=rows("embeddings.position_embeddings.weight"),
        type_vocab_size=rows("embeddings.token_type_embeddings.weight"), hidden_act="gelu", layer_norm_eps=1e-12)
    with torch.device("meta"):
        model: Any = BertModel(config, add_pooling_layer=False)
    _fill_id_buffers(model.embeddings)
    weights_fit.load_strictly(model, kept, path, "HunyuanDiT CLIP (BERT) text encoder", assign=True)
    return model.eval()


def build_mt5(weights: Mapping[str, Tensor], path: object = "<state dict>") -> Module:
    """An ``MT5EncoderModel`` from mT5 encoder weights in transformers' layout (the component prefix removed)."""
    from transformers import MT5Config, MT5EncoderModel

    kept = {key: value for key, value in weights.items() if not key.startswith(t5.IGNORED_PREFIXES)}
    embedding = kept.get("shared.weight", kept.get("encoder.embed_tokens.weight"))
    if embedding is None:
        raise ModelFileError(path, "mT5 token embedding (shared.weight) is missing")
    kept["shared.weight"] = kept["encoder.embed_tokens.weight"] = embedding
    config = MT5Config(**t5.t5_config(kept, path).to_dict())
    with torch.device("meta"):
        model: Any = MT5EncoderModel(config)
    weights_fit.load_strictly(model, kept, path, "mT5 text encoder", assign=True)
    model.encoder.embed_tokens.weight = model.shared.weight  # one tensor, as the tied module has
    return model.eval()


def _fill_id_buffers(embeddings: Any) -> None:
    """BERT's non-persistent ``position_ids``/``token_type_ids`` buffers, left on ``meta``: recomputed."""
    ids = getattr(embeddings, "position_ids", None)
    if ids is not None and ids.is_meta:
        embeddings.position_ids = torch.arange(ids.shape[-1]).expand(1, -1)
    types = getattr(embeddings, "token_type_ids", None)
    if types is not None and types.is_meta:
        embeddings.token_type_ids = torch.zeros(types.shape, dtype=torch.long)


def _under(state_dict: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}


def _words(text: str) -> list[tuple[str, float]]:
    return [(word, weight) for piece, weight in parse_weights(text) for word in piece.replace("\n", " ").split(" ")
            if word]


def tokenize_bert(tokenizer: Any, text: str) -> list[Tokens]:
    """``text`` as BERT chunks ``[(token id, weight)]``: ``[CLS]`` tokens ``[SEP]`` padded to 77 (see the module)."""
    ids: Tokens = []
    for word, weight in _words(text):
        ids.extend((int(token), weight) for token in tokenizer(word, add_special_tokens=False)["input_ids"])
    room = BERT_CHUNK_LENGTH - 2
    pieces = [ids[start:start + room] for start in range(0, len(ids), room)] or [[]]
    cls, sep, pad = _bert_specials(tokenizer)
    chunks = []
    for piece in pieces:
        chunk = [(cls, 1.0), *piece, (sep, 1.0)]
        chunks.append(chunk + [(pad, 1.0)] * max(0, BERT_MIN_LENGTH - len(chunk)))
    return chunks


def _bert_specials(tokenizer: Any) -> tuple[int, int, int]:
    return int(tokenizer.cls_token_id), int(tokenizer.sep_token_id), int(tokenizer.pad_token_id)


def tokenize_mt5(tokenizer: Any, text: str) -> Tokens:
    """``text`` as mT5 tokens: words, ``</s>``, ``<pad>`` up to 256."""
    return t5.tokenize_t5(tokenizer, text, min_length=MT5_MIN_LENGTH)


@torch.no_grad()
def encode_tokens(model: Any, tokens: Tokens, *, end_id: int, empty: list[int], pad_id: int,
                  ) -> tuple[Tensor, Tensor]:
    """One sequence through ``model`` with ComfyUI's mask (1 up to and including the first ``end_id``) and weights
    (``empty``: the first ids of the empty sequence, then ``pad_id``): ``([1, T, C], [1, T])``."""
    device = next(model.parameters()).device
    ids = torch.tensor([[token for token, _ in tokens]], dtype=torch.long, device=device)
    mask = _mask(ids, end_id)
    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
    weights = torch.tensor([weight for _, weight in tokens], dtype=hidden.dtype, device=device)
    if bool((weights != 1.0).any()):
        empty_ids = torch.full_like(ids, pad_id)
        empty_ids[0, :len(empty)] = torch.tensor(empty, device=device)
        base = model(input_ids=empty_ids, attention_mask=_mask(empty_ids, end_id)).last_hidden_state
        hidden = base + (hidden - base) * weights[None, :, None]
    return hidden, mask


def _mask(ids: Tensor, end_id: int) -> Tensor:
    """1 for every position up to and including the first ``end_id``; all ones when there is none."""
    is_end = (ids == end_id).long()
    after_end = (is_end.cumsum(dim=1) - is_end) > 0
    return (~after_end).long()


def encode_hunyuan(encoders: Mapping[str, Any], tokenizers: Mapping[str, Any], text: str) -> dict[str, Tensor]:
    """``text`` through both encoders (``{"hydit_clip": ..., "mt5xl": ...}`` models and tokenizers): the
    conditioning dict the transformer takes (see the module docstring)."""
    bert, bert_tokenizer = encoders["hydit_clip"], tokenizers["hydit_clip"]
    cls, sep, pad = _bert_specials(bert_tokenizer)
    outputs = [encode_tokens(bert, chunk, end_id=sep, empty=[cls, sep], pad_id=pad)
               for chunk in tokenize_bert(bert_tokenizer, text)]
    t5_hidden, t5_mask = encode_tokens(encoders["mt5xl"], tokenize_mt5(tokenizers["mt5xl"], text), end_id=t5.END_ID,
                                       empty=[t5.END_ID], pad_id=t5.PAD_ID)
    return {"encoder_hidden_states": torch.cat([hidden for hidden, _ in outputs], dim=1),
            "text_embedding_mask": torch.cat([mask for _, mask in outputs], dim=1),
            "encoder_hidden_states_t5": t5_hidden, "text_embedding_mask_t5": t5_mask}
