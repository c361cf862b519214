"""The other components of an all-in-one SD3 file: CLIP-L, CLIP-G, T5-XXL and the 16-channel VAE.

SD3 files keep both CLIPs in transformers' layout (``text_encoders.clip_l.transformer.text_model.*``;
``text_encoders.clip_g.transformer.text_model.*`` plus ``text_projection.weight``), unlike SDXL's open_clip bigG:
CLIP-L becomes a ``CLIPTextModel`` (quick-GELU, through the checkpoints' ``build_clip_l``; a ``text_projection``
beside it is not used by SD3 or Flux), CLIP-G a ``CLIPTextModelWithProjection`` (GELU), heads of width 64. The VAE
is the LDM layout without ``quant_conv``/``post_quant_conv``; its latents are scaled by 1.5305 after a shift of
0.0609 (SD3's latent format, as ComfyUI's). Every module comes back in the stored dtype, on the CPU, in eval mode,
strictly loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import torch

from visionatrix.diffusion.checkpoints import convert, text_encoders, weights_fit
from visionatrix.diffusion.dit import t5
from visionatrix.diffusion.dit.sd3 import SD3Info
from visionatrix.errors import ModelFileError

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

VAE_SCALING_FACTOR = 1.5305
VAE_SHIFT_FACTOR = 0.0609


def build_components(state_dict: Mapping[str, Tensor], info: SD3Info, path: object = "<state dict>",
                     ) -> dict[str, Module]:
    """Every component ``info`` lists besides the transformer: ``clip_l``, ``clip_g``, ``t5xxl``, ``vae``."""
    builders: dict[str, Callable[[dict[str, Tensor], object], Module]] = {
        "clip_l": build_clip_l, "clip_g": build_clip_g, "t5xxl": t5.build_t5, "vae": build_vae}
    return {name: build(_under(state_dict, info.components[name]), path)
            for name, build in builders.items() if name in info.components}


def build_clip_l(weights: Mapping[str, Tensor], path: object = "<state dict>") -> Module:
    """A ``CLIPTextModel`` from CLIP-L weights in transformers' layout (the component prefix removed). Files saved
    by ComfyUI carry a ``text_projection.weight`` for CLIP-L too: SD3 and Flux take CLIP-L's unprojected pooled
    output (ComfyUI's ``return_projected_pooled=False``), so it is left out."""
    kept = {key: value for key, value in weights.items() if key != "text_projection.weight"}
    return text_encoders.build_clip_l(kept, path)


def build_clip_g(weights: Mapping[str, Tensor], path: object = "<state dict>") -> Module:
    """A ``CLIPTextModelWithProjection`` from CLIP-G weights in transformers' layout (``text_model.*``,
    ``text_projection.weight``; the component prefix removed)."""
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    weights = {key: value for key, value in weights.items() if key not in ("text_model.embeddings.position_ids",)}
    token = _get(weights, "text_model.embeddings.token_embedding.weight", path)
    vocab, hidden = (int(n) for n in token.shape)
    if hidden % text_encoders.HEAD_WIDTH:
        raise ModelFileError(path, f"CLIP-G width {hidden} is not a multiple of the head width "
                                   f"{text_encoders.HEAD_WIDTH}")
    layers = {int(key.split(".")[3]) for key in weights if key.startswith("text_model.encoder.layers.")}
    config = CLIPTextConfig(
        vocab_size=vocab, hidden_size=hidden, num_attention_heads=hidden // text_encoders.HEAD_WIDTH,
        num_hidden_layers=max(layers) + 1 if layers else 0, hidden_act="gelu",
        intermediate_size=int(_get(weights, "text_model.encoder.layers.0.mlp.fc1.weight", path).shape[0]),
        max_position_embeddings=int(_get(weights, "text_model.embeddings.position_embedding.weight", path).shape[0]),
        projection_dim=int(_get(weights, "text_projection.weight", path).shape[0]),
        bos_token_id=vocab - 2, eos_token_id=vocab - 1)
    with torch.device("meta"):
        model: Any = CLIPTextModelWithProjection(config)
    _fill_position_ids(model.text_model.embeddings)
    weights_fit.load_strictly(model, weights, path, "CLIP-G text encoder", assign=True)
    return model.eval()


def build_vae(weights: Mapping[str, Tensor], path: object = "<state dict>") -> Module:
    """SD3's 16-channel ``AutoencoderKL`` from LDM-layout VAE weights (the component prefix removed)."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    prefixed = {"first_stage_model." + key: value for key, value in weights.items()}
    config = convert.vae_diffusers_config({key: tuple(value.shape) for key, value in prefixed.items()}, path)
    config.update(scaling_factor=VAE_SCALING_FACTOR, shift_factor=VAE_SHIFT_FACTOR)
    converted = convert_ldm_vae_checkpoint(prefixed, config)
    with torch.device("meta"):
        model: Any = AutoencoderKL(**config)
    weights_fit.load_strictly(model, converted, path, "SD3 VAE", assign=True)
    return model.eval()


def _fill_position_ids(embeddings: Any) -> None:
    """CLIP's non-persistent ``position_ids`` buffer, left on ``meta`` by a meta-device build: recomputed."""
    ids = getattr(embeddings, "position_ids", None)
    if ids is not None and ids.is_meta:
        embeddings.position_ids = torch.arange(ids.shape[-1]).expand(1, -1)


def _get(weights: Mapping[str, Any], key: str, path: object) -> Any:
    if key not in weights:
        raise ModelFileError(path, f"CLIP-G weight {key!r} is missing")
    return weights[key]


def _under(state_dict: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}
