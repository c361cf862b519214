"""Prompts of the transformer families through their text encoders, as ComfyUI composes them.

Flux: the conditioning is T5-XXL's last hidden state (padded to 256 tokens), the pooled output CLIP-L's (its
unprojected end-of-text state, from the first 77-token chunk). SD3: CLIP-L and CLIP-G (each the penultimate layer
without the final norm, chunked by 77) side by side, cut to the shorter and zero-padded to T5's width, then T5's
tokens (padded to 77) after them; the pooled output is CLIP-L's and CLIP-G's (projected) side by side. An encoder
that is absent, or given an empty text with ``empty_padding`` off (``CLIPTextEncodeSD3``'s ``none``), is left out:
no CLIP rows, zeros for its pooled part; with no encoder at all the conditioning is zeros ``[1, 77, width]``.
AuraFlow (Pile-T5-XL), PixArt (T5-XXL) and HunyuanDiT (BERT and mT5-XL) encode as
:mod:`visionatrix.diffusion.dit.auraflow`, :mod:`.pixart` and :mod:`.hunyuan_dit_text` say.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from visionatrix.diffusion.checkpoints.detect import Family
from visionatrix.diffusion.dit import t5
from visionatrix.diffusion.text.llama_tokenizer import CATALOG_ENTRY as LLAMA_ENTRY
from visionatrix.diffusion.text.t5_tokenizer import CATALOG_ENTRY
from visionatrix.errors import InvalidInput, ModelFileError

if TYPE_CHECKING:
    from torch import Tensor

    from visionatrix.diffusion.clip import TextEncoder

CLIP_ROWS = 77
SD3_CONTEXT_WIDTH = 4096
"""SD3's text tokens are T5-XXL's width; CLIP rows are zero-padded to it (also when no T5 is loaded)."""


def conditioning(encoder: TextEncoder, text: str, texts: Mapping[str, str], *, empty_padding: bool = True,
                 ) -> tuple[Tensor, dict[str, Any]]:
    """(conditioning ``[1, tokens, width]``, its options) of ``text`` (``texts``: per-encoder texts, keys
    ``clip_l``, ``clip_g``, ``t5xxl``) for the encoder's family: ``pooled_output`` for SD3 and Flux, the masks and
    mT5 tokens for HunyuanDiT (ComfyUI's ``attention_mask``, ``conditioning_mt5xl``, ``attention_mask_mt5xl``)."""
    family = encoder.family
    if family is Family.FLUX:
        cond, pooled = _flux(encoder, text, texts)
        return cond, {"pooled_output": pooled}
    if family is Family.SD3:
        cond, pooled = _sd3(encoder, text, texts, empty_padding)
        return cond, {"pooled_output": pooled}
    if family is Family.AURAFLOW:
        from visionatrix.diffusion.dit import auraflow

        tokenizer = _tokenizer(encoder, "pile_t5xl", "Pile-T5-XL", LLAMA_ENTRY)
        with encoder.running("pile_t5xl"):
            return auraflow.encode_auraflow(encoder.encoders["pile_t5xl"], tokenizer, text).float(), {}
    if family is Family.PIXART:
        from visionatrix.diffusion.dit import pixart

        tokenizer = _tokenizer(encoder, "t5xxl", "T5-XXL", CATALOG_ENTRY)
        with encoder.running("t5xxl"):
            return pixart.encode_pixart(encoder.encoders["t5xxl"], tokenizer, text).float(), {}
    if family is Family.HUNYUAN_DIT:
        return _hunyuan(encoder, text)
    raise InvalidInput("clip", f"no text encoding for {family} models")


def _tokenizer(encoder: TextEncoder, name: str, label: str, entry: str) -> Any:
    if name not in encoder.encoders:
        raise InvalidInput("clip", f"this {encoder.family} CLIP has no {label} text encoder")
    tokenizer = encoder.tokenizers.get(name)
    if tokenizer is None:
        raise ModelFileError(name, f"{label}'s tokenizer is not installed: install the catalog entry {entry}")
    return tokenizer


def _hunyuan(encoder: TextEncoder, text: str) -> tuple[Tensor, dict[str, Any]]:
    from visionatrix.diffusion.dit import hunyuan_dit_text
    from visionatrix.diffusion.text.hunyuan_tokenizers import BERT_CATALOG_ENTRY, MT5_CATALOG_ENTRY

    tokenizers = {"hydit_clip": _tokenizer(encoder, "hydit_clip", "HunyuanDiT's BERT", BERT_CATALOG_ENTRY),
                  "mt5xl": _tokenizer(encoder, "mt5xl", "mT5-XL", MT5_CATALOG_ENTRY)}
    with encoder.running("hydit_clip"), encoder.running("mt5xl"):
        out = hunyuan_dit_text.encode_hunyuan(encoder.encoders, tokenizers, text)
    return out["encoder_hidden_states"].float(), {
        "attention_mask": out["text_embedding_mask"], "conditioning_mt5xl": out["encoder_hidden_states_t5"].float(),
        "attention_mask_mt5xl": out["text_embedding_mask_t5"]}


def _t5(encoder: TextEncoder, text: str, min_length: int) -> Tensor:
    module = encoder.encoders["t5xxl"]
    tokenizer = encoder.tokenizers.get("t5xxl")
    if tokenizer is None:
        raise ModelFileError("t5xxl", f"T5's tokenizer is not installed: install the catalog entry {CATALOG_ENTRY}")
    with encoder.running("t5xxl"):
        return t5.encode_t5(module, tokenizer, text, min_length=min_length).float()


def _flux(encoder: TextEncoder, text: str, texts: Mapping[str, str]) -> tuple[Tensor, Tensor]:
    missing = [name for name in ("clip_l", "t5xxl") if name not in encoder.encoders]
    if missing:
        raise InvalidInput("clip", f"a Flux CLIP needs CLIP-L and T5-XXL; {' and '.join(missing)} missing (load both "
                                   "with DualCLIPLoader, type flux)")
    _, pooled = encoder._encode_one("clip_l", texts.get("clip_l", text))
    cond = _t5(encoder, texts.get("t5xxl", text), t5.MIN_LENGTH["flux"])
    if pooled is None:
        raise InvalidInput("clip", "the CLIP-L text encoder gave no pooled output")
    return cond, pooled.float()


def _sd3(encoder: TextEncoder, text: str, texts: Mapping[str, str], empty_padding: bool) -> tuple[Tensor, Tensor]:
    def wanted(name: str) -> str | None:
        if name not in encoder.encoders:
            return None
        value = texts.get(name, text)
        return None if value == "" and not empty_padding else value

    width = _t5_width(encoder) or SD3_CONTEXT_WIDTH
    rows: Tensor | None = None
    pooled_parts: list[Tensor] = []
    for name in ("clip_l", "clip_g"):
        value = wanted(name)
        size = _pooled_width(encoder, name)
        if value is None:
            pooled_parts.append(torch.zeros(1, size))
            continue
        cond, pooled = encoder._encode_one(name, value)
        cond = cond.float()
        pooled_parts.append(torch.zeros(1, size) if pooled is None else pooled.float().cpu())
        if rows is None:
            rows = cond if name == "clip_l" else F.pad(cond, (_hidden(encoder, "clip_l"), 0))
        else:
            cut = min(rows.shape[1], cond.shape[1])
            rows = torch.cat([rows[:, :cut], cond[:, :cut].to(rows.device)], dim=-1)
    if rows is not None:
        rows = F.pad(rows, (0, max(0, width - rows.shape[-1])))
    t5_text = wanted("t5xxl")
    out = rows
    if t5_text is not None:
        t5_rows = _t5(encoder, t5_text, t5.MIN_LENGTH["sd3"])
        out = t5_rows if rows is None else torch.cat([rows.to(t5_rows.device), t5_rows], dim=1)
    if out is None:
        out = torch.zeros(1, CLIP_ROWS, width)
    pooled_all = torch.cat([part.to(out.device) for part in pooled_parts], dim=-1)
    return out, pooled_all


def _hidden(encoder: TextEncoder, name: str) -> int:
    module = encoder.encoders.get(name)
    if module is None:
        return {"clip_l": 768, "clip_g": 1280}[name]
    return int(getattr(module, "text_model", module).config.hidden_size)


def _pooled_width(encoder: TextEncoder, name: str) -> int:
    module = encoder.encoders.get(name)
    if module is None:
        return {"clip_l": 768, "clip_g": 1280}[name]
    config = getattr(module, "config", None)
    projection = getattr(config, "projection_dim", None) if hasattr(module, "text_projection") else None
    return int(projection or getattr(module, "text_model", module).config.hidden_size)


def _t5_width(encoder: TextEncoder) -> int | None:
    module = encoder.encoders.get("t5xxl")
    return None if module is None else int(module.config.d_model)
