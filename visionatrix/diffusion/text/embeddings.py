"""Textual-inversion embeddings (``embedding:NAME`` in a prompt) from the ``embeddings`` model folder.

Files: A1111's ``.pt`` (``string_to_param`` → ``*``), ``.safetensors`` with one tensor (``emb_params`` or any name),
SDXL's with ``clip_l`` and ``clip_g``. Each is loaded through the model manager (once per file version); the
vectors for an encoder are the tensor named after it, else the first whose width is the encoder's. A name that is
not in the folder, or has no vectors of the encoder's width, is left as text (as ComfyUI, which warns).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from visionatrix.errors import ModelFileError

if TYPE_CHECKING:
    from torch import Tensor

    from visionatrix.diffusion.clip import EmbeddingLookup
    from visionatrix.nodes.context import NodeContext

FOLDER = "embeddings"
EXTENSIONS = ("", ".safetensors", ".pt", ".bin", ".pth")
NAMES_BY_WIDTH = {768: "clip_l", 1280: "clip_g"}
log = logging.getLogger(__name__)


def _vectors_module(state_dict: dict[str, Any]) -> Any:
    import torch

    class EmbeddingVectors(torch.nn.Module):
        def __init__(self, tensors: dict[str, Tensor]) -> None:
            super().__init__()
            self.names = list(tensors)
            for index, tensor in enumerate(tensors.values()):
                vectors = tensor.detach().float()
                self.register_buffer(f"v{index}", vectors.reshape(-1, vectors.shape[-1]))

        def by_name(self) -> dict[str, Tensor]:
            return {name: getattr(self, f"v{index}") for index, name in enumerate(self.names)}

    if not state_dict:
        raise ValueError("holds no vectors")
    return EmbeddingVectors(state_dict)


def embedding_lookup(ctx: NodeContext) -> EmbeddingLookup | None:
    """``lookup(name, width)`` over this context's embeddings folder; None without model folders."""
    folders, manager = ctx.model_folders, ctx.models
    if folders is None or manager is None:
        return None

    def lookup(name: str, width: int) -> Tensor | None:
        path = next((found for ext in EXTENSIONS if (found := folders.find(FOLDER, name + ext)) is not None), None)
        if path is None:
            log.warning("embedding %r is not in the embeddings folder: left as text", name)
            return None
        try:
            module = manager.load(path, _vectors_module, kind="embedding")
        except ModelFileError as exc:
            log.warning("embedding %r cannot be used: %s", name, exc)
            return None
        tensors = module.by_name()
        preferred = NAMES_BY_WIDTH.get(width)
        if preferred in tensors and tensors[preferred].shape[-1] == width:
            return tensors[preferred]
        return next((t for t in tensors.values() if t.shape[-1] == width), None)

    return lookup
