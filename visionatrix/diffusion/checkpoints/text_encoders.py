"""The text encoders of a single-file checkpoint as transformers modules: configs from shapes, weights converted.

CLIP-L (SD1, SDXL's first encoder) is stored in transformers' own layout under ``text_model.``: it becomes a
``CLIPTextModel`` (quick-GELU). OpenCLIP (SD2's ViT-H, SDXL's bigG) is stored in open_clip's layout (fused
``in_proj_weight``, ``text_projection`` as ``x @ P``): diffusers' ``convert_open_clip_checkpoint`` splits and
transposes it into a ``CLIPTextModelWithProjection`` (GELU), every layer kept: which hidden layer conditions the
UNet (SD2 and SDXL take the penultimate) is the encoding step's choice, not the loader's. Heads are not in the
weights: both families use heads of width 64. Token ids: the last two of the vocabulary are start and end.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from visionatrix.diffusion.checkpoints import weights_fit
from visionatrix.errors import ModelFileError

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

HEAD_WIDTH = 64
NEUTRAL_PREFIX = "open_clip."
"""OpenCLIP weights are re-keyed under this prefix before conversion: diffusers drops layer 23 and the projection
of keys spelled with SD2's real prefix, which would make a 24-layer file load differently from a tiny one."""
SKIPPED_KEYS = ("embeddings.position_ids", "text_projection.weight", "logit_scale")
"""Tensors some files carry beside CLIP-L's text model that the UNet never uses: the position-ids buffer of older
files (recomputed by the model), and the projection and logit scale ComfyUI-saved files keep."""


def build_clip_l(weights: Mapping[str, Tensor], path: object) -> Module:
    """A ``CLIPTextModel`` from CLIP-L weights keyed ``text_model.*`` or, from older files, without that prefix
    (the component prefix removed)."""
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel

    prefixed = {"cond_stage_model.transformer." + key: value for key, value in weights.items()}
    converted = convert_ldm_clip_checkpoint(prefixed)
    converted = {key.removeprefix("text_model."): value for key, value in converted.items()}
    converted = {key: value for key, value in converted.items() if key not in SKIPPED_KEYS}
    token = _get(converted, "embeddings.token_embedding.weight", path)
    config = CLIPTextConfig(**_sizes(token, converted["embeddings.position_embedding.weight"].shape[0],
                                     r"encoder\.layers\.(\d+)\.", "encoder.layers.0.mlp.fc1.weight", converted, path),
                            hidden_act="quick_gelu")
    with _meta():
        model = CLIPTextModel(config)
    return _loaded(model, converted, path)


def build_open_clip(weights: Mapping[str, Tensor], path: object) -> Module:
    """A ``CLIPTextModelWithProjection`` from OpenCLIP weights (``token_embedding.weight``,
    ``transformer.resblocks.N.*``, ``ln_final``, ``text_projection``, the component prefix removed)."""
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    token = _get(weights, "token_embedding.weight", path)
    projection = _get(weights, "text_projection", path)
    sizes = _sizes(token, _get(weights, "positional_embedding", path).shape[0], r"transformer\.resblocks\.(\d+)\.",
                   "transformer.resblocks.0.mlp.c_fc.weight", weights, path)
    config = CLIPTextConfig(**sizes, hidden_act="gelu", projection_dim=int(projection.shape[1]))
    with _meta():
        model = CLIPTextModelWithProjection(config)
    prefixed = {NEUTRAL_PREFIX + key: value for key, value in weights.items()}
    converted = convert_open_clip_checkpoint(model, prefixed, prefix=NEUTRAL_PREFIX)
    return _loaded(model, converted, path)


def _sizes(token: Tensor, positions: int, layer_pattern: str, fc1_key: str, weights: Mapping[str, Any],
           path: object) -> dict[str, Any]:
    vocab, hidden = (int(n) for n in token.shape)
    if hidden % HEAD_WIDTH:
        raise ModelFileError(path, f"text encoder width {hidden} is not a multiple of the head width {HEAD_WIDTH}")
    regex = re.compile(layer_pattern)
    layers = {int(m.group(1)) for key in weights if (m := regex.match(key))}
    if not layers:
        raise ModelFileError(path, "text encoder has no transformer layers")
    return {"vocab_size": vocab, "hidden_size": hidden, "num_attention_heads": hidden // HEAD_WIDTH,
            "num_hidden_layers": max(layers) + 1, "intermediate_size": int(_get(weights, fc1_key, path).shape[0]),
            "max_position_embeddings": int(positions), "bos_token_id": vocab - 2, "eos_token_id": vocab - 1}


def _get(weights: Mapping[str, Any], key: str, path: object) -> Any:
    if key not in weights:
        raise ModelFileError(path, f"text encoder weight {key!r} is missing")
    return weights[key]


def _meta() -> Any:
    """Build encoders without allocating or initialising weights (the file's tensors are assigned after)."""
    import torch

    return torch.device("meta")


def _loaded(model: Module, weights: Mapping[str, Tensor], path: object) -> Module:
    """``model`` (built on the meta device) with ``weights`` assigned strictly (shapes included);
    :class:`ModelFileError` naming a few misfits. The position ids, a buffer files do not store, are made anew."""
    import torch

    embeddings = getattr(model, "text_model", model).embeddings
    positions = embeddings.position_embedding.num_embeddings
    embeddings.register_buffer("position_ids", torch.arange(positions).expand((1, -1)), persistent=False)
    weights_fit.load_strictly(model, weights, path, "text encoder", assign=True)
    return model.eval()
