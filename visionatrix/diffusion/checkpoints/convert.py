"""A single-file (LDM layout) SD1/SD2/SDXL checkpoint as diffusers and transformers modules, offline.

Configs come from the detected :class:`~visionatrix.diffusion.checkpoints.detect.CheckpointInfo` (shapes plus the
family's rules), never from diffusers' hub lookups or its SDXL heuristics (it decides "SDXL" by context width and
fixes the time-embedding width at 256). Key renaming uses diffusers' pure converter functions. Every module is
loaded strictly: a missing, unexpected or misshapen weight is a :class:`ModelFileError` naming a few.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from visionatrix.diffusion.checkpoints import text_encoders, unet_config, weights_fit
from visionatrix.diffusion.checkpoints.detect import SAMPLE_SIZES, CheckpointInfo, Family, Prediction
from visionatrix.errors import ModelFileError

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

VAE_SCALING_FACTORS = {Family.SD1: 0.18215, Family.SD2: 0.18215, Family.SDXL: 0.13025, Family.SDXL_REFINER: 0.13025}
EDM_VAE_SCALING_FACTOR = 0.5
"""Playground 2.5 normalises latents by its ``edm_mean``/``edm_std`` and then scales by 0.5."""


@dataclass
class ConvertedCheckpoint:
    """The modules of one checkpoint; ``text_encoders`` maps ``clip_l``/``open_clip``/``clip_g`` to modules."""

    unet: Module
    vae: Module | None
    text_encoders: dict[str, Module] = field(default_factory=dict)


def convert(state_dict: Mapping[str, Tensor], info: CheckpointInfo, path: object = "<state dict>",
            ) -> ConvertedCheckpoint:
    """Build every component ``info`` lists from ``state_dict`` (the file's tensors, LDM keys)."""
    result = ConvertedCheckpoint(unet=build_unet(state_dict, info, path), vae=None)
    if "vae" in info.components:
        result.vae = build_vae(state_dict, info, path)
    builders = {"clip_l": text_encoders.build_clip_l, "open_clip": text_encoders.build_open_clip,
                "clip_g": text_encoders.build_open_clip}
    for name, build in builders.items():
        if name in info.components:
            result.text_encoders[name] = build(_under(state_dict, info.components[name]), path)
    return result


def build_unet(state_dict: Mapping[str, Tensor], info: CheckpointInfo, path: object = "<state dict>") -> Module:
    """The ``UNet2DConditionModel`` of the checkpoint."""
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import LDM_UNET_KEY, convert_ldm_unet_checkpoint

    config = unet_diffusers_config(info, path)
    prefix = info.components["unet"]
    unet_weights = {LDM_UNET_KEY + key: value for key, value in _under(state_dict, prefix).items()}
    converted = convert_ldm_unet_checkpoint(unet_weights, config)
    with _meta_device():
        model: Any = UNet2DConditionModel(**config)
    weights_fit.load_strictly(model, converted, path, "UNet", assign=True)
    return model.eval()


def unet_diffusers_config(info: CheckpointInfo, path: object = "<state dict>") -> dict[str, Any]:
    """The ``UNet2DConditionModel`` config of the checkpoint, from its shapes and its family's rules."""
    heads = unet_config.attention_heads(info.unet, head_width=info.head_width, path=path)
    return unet_config.diffusers_unet_config(info.unet, heads=heads,
                                             addition_time_embed_dim=info.addition_time_embed_dim,
                                             sample_size=SAMPLE_SIZES[info.family], path=path)


def build_vae(state_dict: Mapping[str, Tensor], info: CheckpointInfo, path: object = "<state dict>") -> Module:
    """The ``AutoencoderKL`` of the checkpoint, its scaling from the family (Playground 2.5: its EDM statistics)."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    weights = {"first_stage_model." + key: value for key, value in _under(state_dict, info.components["vae"]).items()}
    config = vae_diffusers_config({key: tuple(value.shape) for key, value in weights.items()}, path)
    config["scaling_factor"] = VAE_SCALING_FACTORS[info.family]
    if info.prediction is Prediction.EDM and "edm_mean" in state_dict and "edm_std" in state_dict:
        config.update(scaling_factor=EDM_VAE_SCALING_FACTOR,
                      latents_mean=[float(x) for x in state_dict["edm_mean"].flatten()],
                      latents_std=[float(x) for x in state_dict["edm_std"].flatten()])
    converted = convert_ldm_vae_checkpoint(weights, config)
    with _meta_device():
        model: Any = AutoencoderKL(**config)
    weights_fit.load_strictly(model, converted, path, "VAE", assign=True)
    return model.eval()


def vae_diffusers_config(shapes: Mapping[str, tuple[int, ...]], path: object) -> dict[str, Any]:
    """The ``AutoencoderKL`` config read from LDM VAE shapes (keys ``first_stage_model.encoder...``)."""
    prefix = "first_stage_model."

    def shape(key: str) -> tuple[int, ...]:
        if prefix + key not in shapes:
            raise ModelFileError(path, f"VAE weight {key!r} is missing")
        return shapes[prefix + key]

    levels = _count(shapes, prefix + r"encoder\.down\.(\d+)\.")
    blocks = _count(shapes, prefix + r"encoder\.down\.0\.block\.(\d+)\.")
    if not levels or not blocks:
        raise ModelFileError(path, "VAE encoder has no down blocks")
    widths = tuple(shape(f"encoder.down.{level}.block.0.conv1.weight")[0] for level in range(levels))
    return {
        "in_channels": shape("encoder.conv_in.weight")[1],
        "out_channels": shape("decoder.conv_out.weight")[0],
        "down_block_types": ("DownEncoderBlock2D",) * levels,
        "up_block_types": ("UpDecoderBlock2D",) * levels,
        "block_out_channels": widths,
        "layers_per_block": blocks,
        "latent_channels": shape("decoder.conv_in.weight")[1],
        "use_quant_conv": prefix + "quant_conv.weight" in shapes,
        "use_post_quant_conv": prefix + "post_quant_conv.weight" in shapes,
    }


def _count(shapes: Mapping[str, Any], pattern: str) -> int:
    regex = re.compile(pattern)
    found = {int(m.group(1)) for key in shapes if (m := regex.match(key))}
    return max(found) + 1 if found else 0


def _meta_device() -> Any:
    """Build modules without allocating or initialising weights (the file's tensors are assigned after)."""
    import torch

    return torch.device("meta")


def _under(state_dict: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries under ``prefix``, the prefix removed."""
    return {key[len(prefix):]: value for key, value in state_dict.items() if key.startswith(prefix)}
