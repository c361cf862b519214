"""A prompt's chunks through a CLIP text encoder (``transformers.CLIPTextModel`` or ``CLIPTextModelWithProjection``):
the conditioning (one row per token, the chunks side by side: 77·n rows) and the pooled output.

Which layer conditions the UNet is the family's (``LAYERS``), as ComfyUI reads it: SD1 the last layer after the
final layer norm; SD2 the penultimate layer with the final norm; SDXL's two encoders the penultimate layer without
it. ``CLIPSetLastLayer`` moves the layer (``layer.at(-2)``). The pooled output (SDXL's size conditioning takes
bigG's) is the projected end-of-text state of the first chunk.

Weights (``(word:1.3)``) follow ComfyUI: when a chunk has a weight other than 1, each row becomes
``empty + (row - empty)·weight``, where ``empty`` is the same encoder's output for the empty prompt. Textual
inversion vectors replace the token embeddings of their slots.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from visionatrix.diffusion.text.chunks import Chunk, EmbeddingSlot, tokenize_prompt


@dataclass(frozen=True)
class EncoderLayer:
    """``index`` into the encoder's hidden states (None: its last layer); ``final_norm``: apply its final layer norm
    to that layer's output."""

    index: int | None
    final_norm: bool

    def at(self, last_layer: int) -> EncoderLayer:
        """``CLIPSetLastLayer``: -1 the last layer, -2 the penultimate, ..."""
        if last_layer >= 0:
            raise ValueError(f"a CLIP layer is counted from the end (-1, -2, ...), got {last_layer}")
        return dataclasses.replace(self, index=None if last_layer == -1 and self.final_norm else last_layer)


LAYERS = {
    "sd1": EncoderLayer(None, True),
    "sd2": EncoderLayer(-2, True),
    "sdxl": EncoderLayer(-2, False),
}


@dataclass
class Encoded:
    cond: torch.Tensor
    """``[1, 77·chunks, width]``"""
    pooled: torch.Tensor | None
    """``[1, projection]`` (or ``[1, width]`` for an encoder without projection)"""


def _core(model: Any) -> Any:
    return getattr(model, "text_model", model)


@contextmanager
def _slot_vectors(model: Any, vectors: torch.Tensor | None) -> Iterator[None]:
    """Token embeddings whose rows are replaced where ``vectors`` (``[chunks, 77, width]``) is not NaN."""
    if vectors is None:
        yield
        return

    def replace(_module: Any, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        mask = ~torch.isnan(vectors[..., :1])
        return torch.where(mask, vectors.to(output.dtype), output)

    handle = _core(model).embeddings.token_embedding.register_forward_hook(replace)
    try:
        yield
    finally:
        handle.remove()


def _ids_and_vectors(chunks: Sequence[Chunk], width: int, embeddings: Mapping[str, torch.Tensor] | None,
                     unknown_id: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    ids = torch.tensor([[token if isinstance(token, int) else unknown_id for token, _ in chunk]
                        for chunk in chunks], dtype=torch.long)
    slots = [(c, p, token) for c, chunk in enumerate(chunks) for p, (token, _) in enumerate(chunk)
             if isinstance(token, EmbeddingSlot)]
    if not slots:
        return ids, None
    vectors = torch.full((len(chunks), len(chunks[0]), width), float("nan"))
    for chunk_index, position, slot in slots:
        if embeddings is None or slot.name not in embeddings:
            raise ValueError(f"no vectors for the embedding {slot.name!r}")
        vector = embeddings[slot.name][slot.index]
        if vector.shape[-1] != width:
            raise ValueError(f"embedding {slot.name!r} has vectors of {vector.shape[-1]} values, this text encoder "
                             f"takes {width}")
        vectors[chunk_index, position] = vector.float()
    return ids, vectors


def _hidden(model: Any, ids: torch.Tensor, vectors: torch.Tensor | None,
            layer: EncoderLayer) -> tuple[torch.Tensor, torch.Tensor | None]:
    device = next(model.parameters()).device
    with _slot_vectors(model, None if vectors is None else vectors.to(device)):
        out = model(input_ids=ids.to(device), output_hidden_states=layer.index is not None)
    hidden = out.last_hidden_state if layer.index is None else out.hidden_states[layer.index]
    if layer.index is not None and layer.final_norm:
        hidden = _core(model).final_layer_norm(hidden)
    pooled = getattr(out, "text_embeds", None)
    if pooled is None:
        pooled = out.pooler_output
    return hidden, pooled


def encode_chunks(model: Any, chunks: Sequence[Chunk], layer: EncoderLayer, *, kind: str = "clip_l",
                  embeddings: Mapping[str, torch.Tensor] | None = None) -> Encoded:
    """The conditioning of ``chunks`` (from :func:`tokenize_prompt` with the same ``kind``) through ``model``."""
    width = _core(model).config.hidden_size
    ids, vectors = _ids_and_vectors(chunks, width, embeddings, unknown_id=_core(model).config.eos_token_id)
    hidden, pooled = _hidden(model, ids, vectors, layer)
    weights = torch.tensor([[weight for _, weight in chunk] for chunk in chunks], dtype=hidden.dtype,
                           device=hidden.device)
    if bool((weights != 1.0).any()):
        (empty_chunk,) = tokenize_prompt("", kind, max_length=len(chunks[0]))
        empty, _ = _hidden(model, torch.tensor([[token for token, _ in empty_chunk]]), None, layer)
        hidden = empty + (hidden - empty) * weights[..., None]
    cond = hidden.reshape(1, -1, hidden.shape[-1])
    return Encoded(cond=cond, pooled=pooled[:1] if pooled is not None else None)


def encode_prompt(model: Any, text: str, layer: EncoderLayer, *, kind: str = "clip_l",
                  embeddings: Mapping[str, torch.Tensor] | None = None) -> Encoded:
    """``text`` tokenized (weights, long prompts, embeddings) and encoded by ``model``."""
    sizes = {name: int(vectors.shape[0]) for name, vectors in (embeddings or {}).items()}
    chunks = tokenize_prompt(text, kind, embedding_size=sizes.get if embeddings else None)
    return encode_chunks(model, chunks, layer, kind=kind, embeddings=embeddings)
