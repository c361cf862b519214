"""CLIP: a checkpoint's text encoders and how a prompt becomes conditioning for its family.

SD1: CLIP-L's last layer after the final norm. SD2: OpenCLIP ViT-H's penultimate layer with the norm. SDXL: CLIP-L
and OpenCLIP bigG, each the penultimate layer without the norm, side by side (768 + 1280 = 2048 wide), and bigG's
pooled output; the refiner: bigG alone. ``CLIPSetLastLayer`` moves the layer of every encoder. The encoders are held
by the model manager and shared; LoRA patches are applied per encode and undone after.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import torch

from visionatrix.diffusion.checkpoints.detect import Family
from visionatrix.diffusion.patches import Patch, applied
from visionatrix.diffusion.text.chunks import tokenize_prompt
from visionatrix.diffusion.text.encode import LAYERS, EncoderLayer, encode_chunks

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

ORDER = ("clip_l", "open_clip", "clip_g")
"""Encoders side by side in this order (SDXL: CLIP-L then bigG)."""
TOKENIZER_KIND = {"clip_l": "clip_l", "open_clip": "clip_g", "clip_g": "clip_g"}
FAMILY_LAYER = {Family.SD1: "sd1", Family.SD2: "sd2", Family.SDXL: "sdxl", Family.SDXL_REFINER: "sdxl",
                Family.SD3: "sdxl", Family.FLUX: "sd1"}
TRANSFORMER_FAMILIES = (Family.SD3, Family.FLUX, Family.AURAFLOW, Family.PIXART, Family.HUNYUAN_DIT)
"""Families whose prompts go through :mod:`visionatrix.diffusion.dit.text` (T5 and the like beside or instead of
CLIP)."""

EmbeddingLookup = Callable[[str, int], "Tensor | None"]
"""``lookup(name, width)``: the textual-inversion vectors ``[n, width]`` of embedding ``name``, or None."""


@dataclass(frozen=True)
class TextEncoder:
    """ComfyUI's CLIP: the encoders of one checkpoint (or text-encoder files) with their layer and patches."""

    encoders: Mapping[str, Module]
    family: Family
    last_layer: int | None = None
    """``CLIPSetLastLayer``'s layer (-1 the last, ...); None: the family's own (SD2/SDXL: the penultimate)."""
    patches: Mapping[str, tuple[Patch, ...]] = field(default_factory=lambda: MappingProxyType({}))
    embeddings: EmbeddingLookup | None = None
    use: Callable[[Any], Any] | None = None
    """The model manager's ``use`` (keeps an encoder on the device while it runs); None: use as is."""
    tokenizers: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """Tokenizers that do not ship with the project (``t5xxl``: T5's, a catalog download)."""
    offload: Callable[[Any], Any] | None = None
    """The model manager's ``offload`` (moves an encoder off the GPU once a prompt is encoded); None: keep."""

    def with_patches(self, encoder: str, patches: Sequence[Patch]) -> TextEncoder:
        merged = {**self.patches, encoder: self.patches.get(encoder, ()) + tuple(patches)}
        return dataclasses.replace(self, patches=MappingProxyType(merged))

    def with_last_layer(self, last_layer: int) -> TextEncoder:
        if last_layer >= 0:
            raise ValueError(f"a CLIP layer is counted from the end (-1, -2, ...), got {last_layer}")
        return dataclasses.replace(self, last_layer=last_layer)

    def held_models(self) -> tuple[Any, ...]:
        """The managed encoders this value holds (the executor drops cached outputs when the manager drops them)."""
        return tuple(self.encoders.values())

    def layer(self, module: Any = None) -> EncoderLayer:
        """The layer conditioning the model: the family's own unless ``CLIPSetLastLayer`` chose one; a layer beyond
        ``module``'s depth falls back to its last layer after the final norm, as ComfyUI does."""
        base = LAYERS[FAMILY_LAYER[self.family]]
        if self.last_layer is None:
            return base
        depth = None if module is None else int(getattr(module, "text_model", module).config.num_hidden_layers)
        if depth is not None and -self.last_layer > depth:
            return EncoderLayer(None, True)
        return base.at(self.last_layer)

    def conditioning(self, text: str, texts: Mapping[str, str] | None = None, *, empty_padding: bool = True,
                     ) -> tuple[Tensor, dict[str, Any]]:
        """``text`` as a CONDITIONING entry: the tensor and its options (``pooled_output`` where the family has one,
        HunyuanDiT's masks and mT5 tokens)."""
        if self.family in TRANSFORMER_FAMILIES:
            from visionatrix.diffusion.dit import text as dit_text

            try:
                return dit_text.conditioning(self, text, texts or {}, empty_padding=empty_padding)
            finally:
                self._offload()
        cond, pooled = self.encode(text, texts)
        return cond, {} if pooled is None else {"pooled_output": pooled}

    def encode(self, text: str, texts: Mapping[str, str] | None = None, *, empty_padding: bool = True,
               ) -> tuple[Tensor, Tensor | None]:
        """``text`` (ComfyUI's prompt syntax) as conditioning ``[1, 77n, width]`` and the pooled output (the last
        encoder's, ``[1, P]``; None for SD1, whose UNet takes none). ``texts`` gives an encoder its own text
        (``CLIPTextEncodeSDXL``'s ``text_l`` / ``text_g``); a shorter result is padded with empty-prompt chunks.
        SD3 and Flux: see :mod:`visionatrix.diffusion.dit.text` (``empty_padding=False``: an encoder given an empty
        text is left out, ``CLIPTextEncodeSD3``'s ``none``)."""
        if self.family in TRANSFORMER_FAMILIES:
            cond, options = self.conditioning(text, texts, empty_padding=empty_padding)
            return cond, options.get("pooled_output")
        names = [name for name in ORDER if name in self.encoders]
        conds: list[Tensor] = []
        pooled: Tensor | None = None
        for name in names:
            cond, pooled = self._encode_one(name, (texts or {}).get(name, text))
            conds.append(cond.float())
        rows = max(cond.shape[1] for cond in conds)
        for index, name in enumerate(names):
            if conds[index].shape[1] < rows:
                empty = self._encode_one(name, "")[0].float()
                repeats = -(-(rows - conds[index].shape[1]) // empty.shape[1])
                conds[index] = torch.cat([conds[index], empty.repeat(1, repeats, 1)], dim=1)[:, :rows]
        cond = torch.cat(conds, dim=-1) if len(conds) > 1 else conds[0]
        self._offload()
        if self.family is Family.SD1 or pooled is None:
            return cond, None
        return cond, pooled.float()

    def _offload(self) -> None:
        if self.offload is not None:
            for module in self.encoders.values():
                self.offload(module)

    def running(self, name: str) -> contextlib.ExitStack:
        """A context holding encoder ``name`` on the device with its patches applied (and undone after)."""
        module = self.encoders[name]
        stack = contextlib.ExitStack()
        stack.enter_context(self.use(module) if self.use is not None else contextlib.nullcontext(module))
        stack.enter_context(applied(module, self.patches.get(name, ())))
        stack.enter_context(torch.inference_mode())
        return stack

    def _encode_one(self, name: str, text: str) -> tuple[Tensor, Tensor | None]:
        module = self.encoders[name]
        kind = TOKENIZER_KIND[name]
        width = int(getattr(module, "text_model", module).config.hidden_size)
        vectors: dict[str, Tensor] = {}

        def size(embedding: str) -> int | None:
            if self.embeddings is None:
                return None
            found = self.embeddings(embedding, width)
            if found is None:
                return None
            vectors[embedding] = found
            return int(found.shape[0])

        chunks = tokenize_prompt(text, kind, embedding_size=size if self.embeddings is not None else None)
        with self.running(name):
            encoded = encode_chunks(module, chunks, self.layer(module), kind=kind, embeddings=vectors or None)
        return encoded.cond, encoded.pooled

