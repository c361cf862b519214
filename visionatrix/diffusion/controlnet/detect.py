"""Which layout and family a ControlNet file is, and the ``ControlNetModel`` config that fits its weights.

Works on ``{key: shape}``. Two layouts:

- LDM single file (``cldm.ControlNet``): keys under ``control_model.`` or without a prefix: the UNet's encoder half
  (``time_embed``, ``input_blocks``, ``middle_block``, SDXL's ``label_emb``) plus ``input_hint_block`` (the hint
  encoder), ``zero_convs`` (one 1x1 conv per input block) and ``middle_block_out``;
- diffusers (``ControlNetModel``): ``conv_in``, ``down_blocks``, ``mid_block``, ``controlnet_cond_embedding``,
  ``controlnet_down_blocks``, ``controlnet_mid_block`` (SDXL: ``add_embedding``).

The UNet half is read like a checkpoint's UNet (:func:`~visionatrix.diffusion.checkpoints.unet_config.
unet_config_from_shapes`; the diffusers layout is read into the same :class:`UnetConfig`), heads come from the
family's rule, and the hint encoder's widths from its convolutions. Never the hub, never the network.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from visionatrix.diffusion.checkpoints import convert, unet_config
from visionatrix.diffusion.checkpoints.detect import (
    SDXL_POOLED_PER_TIME_DIM,
    SDXL_TIME_EMBEDDINGS,
    CheckpointInfo,
    Family,
    prefix_summary,
)
from visionatrix.errors import ModelFileError

Shapes = Mapping[str, Sequence[int]]

LDM_PREFIX = "control_model."
LDM_MARKERS = ("input_hint_block.", "zero_convs.", "middle_block_out.")
DIFFUSERS_MARKERS = ("controlnet_cond_embedding.", "controlnet_down_blocks.", "controlnet_mid_block.")
HINT_PREFIX = {"ldm": "input_hint_block.", "diffusers": "controlnet_cond_embedding."}
UNSUPPORTED = (
    ("lora_controlnet", "a Control-LoRA (lora_controlnet): it patches the base model and is not supported"),
    ("body.0.resnets.0.block1.weight", "a T2I-Adapter, not a ControlNet: not supported"),
    ("adapter.body.0.resnets.0.block1.weight", "a T2I-Adapter, not a ControlNet: not supported"),
    ("task_embedding", "a ControlNet Union (task embeddings): not supported"),
)


@dataclass(frozen=True)
class ControlNetInfo:
    """A ControlNet file's layout (``"ldm"`` or ``"diffusers"``), key prefix, family and UNet-half shape."""

    layout: str
    prefix: str
    family: Family
    unet: unet_config.UnetConfig
    conditioning_channels: int
    embedding_channels: tuple[int, ...]
    """``conditioning_embedding_out_channels``: the hint encoder's widths (real files: 16, 32, 96, 256)."""


def detect(shapes: Shapes, path: object = "<state dict>") -> ControlNetInfo:
    """The layout and shape of the ControlNet whose tensors have ``shapes``; :class:`ModelFileError` naming what
    was found when it is not an SD1/SD2/SDXL ControlNet."""
    for marker, what in UNSUPPORTED:
        if any(key == marker or key.startswith(marker + ".") or key.endswith("." + marker) for key in shapes):
            raise ModelFileError(path, f"{what}")
    layout, prefix = _layout(shapes, path)
    own = {key[len(prefix):]: shape for key, shape in shapes.items() if key.startswith(prefix)}
    unet = _ldm_unet_config(own, path) if layout == "ldm" else diffusers_unet_config_from_shapes(own, path)
    channels, embedding = hint_encoder_channels(own, layout, path)
    if embedding[-1] != unet.model_channels:
        raise ModelFileError(path, f"ControlNet hint encoder ends at width {embedding[-1]}, the network starts at "
                                   f"{unet.model_channels}")
    return ControlNetInfo(layout=layout, prefix=prefix, family=family_of(unet, path), unet=unet,
                          conditioning_channels=channels, embedding_channels=embedding[:-1])


def _layout(shapes: Shapes, path: object) -> tuple[str, str]:
    for prefix in (LDM_PREFIX, ""):
        if any(key.startswith(prefix + marker) for key in shapes for marker in LDM_MARKERS) and (
                f"{prefix}input_blocks.0.0.weight" in shapes):
            return "ldm", prefix
    if any(key.startswith(marker) for key in shapes for marker in DIFFUSERS_MARKERS) and "conv_in.weight" in shapes:
        return "diffusers", ""
    raise ModelFileError(path, "not a ControlNet: no input_hint_block/zero_convs (single file) or controlnet_cond_"
                               f"embedding/controlnet_down_blocks (diffusers); found {prefix_summary(shapes)}")


def _ldm_unet_config(shapes: Shapes, path: object) -> unet_config.UnetConfig:
    """The UNet half's config; a ControlNet has no output blocks, so the output width is taken as the input's."""
    with_out = dict(shapes)
    first = shapes.get("input_blocks.0.0.weight")
    if first is not None and "out.2.weight" not in with_out:
        with_out["out.2.weight"] = (first[1], first[0], 3, 3)
    return unet_config.unet_config_from_shapes(with_out, path)


def diffusers_unet_config_from_shapes(shapes: Shapes, path: object) -> unet_config.UnetConfig:
    """The UNet half of a diffusers-layout ControlNet read into an LDM :class:`UnetConfig`."""
    conv_in = _shape(shapes, "conv_in.weight", path)
    model_channels = conv_in[0]
    levels = _count(shapes, r"down_blocks\.(\d+)\.")
    if not levels:
        raise ModelFileError(path, "ControlNet has no down_blocks")
    widths = [_shape(shapes, f"down_blocks.{level}.resnets.0.conv1.weight", path)[0] for level in range(levels)]
    if any(width % model_channels for width in widths):
        raise ModelFileError(path, f"ControlNet block widths {widths} are not multiples of {model_channels}")
    res_blocks = {_count(shapes, rf"down_blocks\.{level}\.resnets\.(\d+)\.") for level in range(levels)}
    if len(res_blocks) != 1:
        raise ModelFileError(path, f"ControlNet levels hold different numbers of residual blocks: {sorted(res_blocks)}")
    depth = tuple(_count(shapes, rf"down_blocks\.{level}\.attentions\.0\.transformer_blocks\.(\d+)\.")
                  for level in range(levels))
    if not any(depth):
        raise ModelFileError(path, "ControlNet has no cross-attention blocks")
    to_k = next(key for key in sorted(shapes) if key.endswith("transformer_blocks.0.attn2.to_k.weight"))
    proj_in = next((key for key in sorted(shapes) if key.endswith(".proj_in.weight")), to_k)
    adm = shapes.get("add_embedding.linear_1.weight")
    return unet_config.UnetConfig(
        in_channels=conv_in[1], out_channels=conv_in[1], model_channels=model_channels,
        channel_mult=tuple(width // model_channels for width in widths), num_res_blocks=res_blocks.pop(),
        attention_levels=tuple(d > 0 for d in depth), transformer_depth=depth,
        transformer_depth_middle=_count(shapes, r"mid_block\.attentions\.0\.transformer_blocks\.(\d+)\."),
        context_dim=shapes[to_k][1], use_linear_projection=len(shapes[proj_in]) == 2,
        adm_in_channels=adm[1] if adm is not None else None)


def hint_convolutions(shapes: Shapes, layout: str) -> list[str]:
    """The hint encoder's convolution names in order (without ``.weight``), first to last."""
    prefix = HINT_PREFIX[layout]
    if layout == "ldm":
        indices = sorted(int(m.group(1)) for key in shapes
                         if (m := re.fullmatch(re.escape(prefix) + r"(\d+)\.weight", key)))
        return [f"{prefix}{index}" for index in indices]
    blocks = _count(shapes, re.escape(prefix) + r"blocks\.(\d+)\.")
    names = [f"{prefix}conv_in", *(f"{prefix}blocks.{index}" for index in range(blocks)), f"{prefix}conv_out"]
    return [name for name in names if f"{name}.weight" in shapes]


def hint_encoder_channels(shapes: Shapes, layout: str, path: object) -> tuple[int, tuple[int, ...]]:
    """``(conditioning channels, widths)``: the hint's channels and each stage's width, the last being the
    network's ``model_channels`` (the encoder's output conv)."""
    convs = hint_convolutions(shapes, layout)
    if len(convs) < 2 or len(convs) % 2:
        raise ModelFileError(path, f"ControlNet hint encoder has {len(convs)} convolutions; expected an even number "
                                   "(input, pairs of stages, output)")
    outs = [shapes[f"{name}.weight"][0] for name in convs]
    # conv_in, then per stage (same width, widen and downsample), then conv_out
    widths = (outs[0], *(outs[index] for index in range(2, len(convs) - 1, 2)), outs[-1])
    return shapes[f"{convs[0]}.weight"][1], tuple(widths)


def family_of(config: unet_config.UnetConfig, path: object) -> Family:
    """SD1 (1x1-conv projections), SD2 (linear), SDXL (``label_emb``/``add_embedding`` in the family's ratio)."""
    adm = config.adm_in_channels
    if adm is None:
        return Family.SD2 if config.use_linear_projection else Family.SD1
    if config.use_linear_projection and adm == 2 * config.context_dim:
        return Family.SDXL_REFINER
    if config.use_linear_projection and adm % (SDXL_TIME_EMBEDDINGS[Family.SDXL] + SDXL_POOLED_PER_TIME_DIM) == 0:
        return Family.SDXL
    raise ModelFileError(path, f"unknown ControlNet family: label_emb input width {adm} with context width "
                               f"{config.context_dim} is neither SDXL base nor refiner")


def diffusers_config(info: ControlNetInfo, path: object = "<state dict>") -> dict[str, Any]:
    """The ``ControlNetModel`` config of ``info``, from its shapes and its family's rules."""
    checkpoint = CheckpointInfo(family=info.family, inpaint=False, components={}, prediction=None, unet=info.unet)
    unet = convert.unet_diffusers_config(checkpoint, path)
    config = {key: value for key, value in unet.items()
              if key not in ("sample_size", "out_channels", "up_block_types")}
    config.update(conditioning_channels=info.conditioning_channels,
                  conditioning_embedding_out_channels=info.embedding_channels)
    return config


STRUCTURE_KEYS = ("in_channels", "block_out_channels", "layers_per_block", "cross_attention_dim",
                  "use_linear_projection", "conditioning_channels", "conditioning_embedding_out_channels",
                  "projection_class_embeddings_input_dim")


def json_config_fits(candidate: Mapping[str, Any], config: Mapping[str, Any]) -> bool:
    """Whether a ``config.json`` found beside a file describes the same network as its shapes do."""
    if candidate.get("_class_name", "ControlNetModel") != "ControlNetModel":
        return False
    defaults = {"in_channels": 4, "conditioning_channels": 3, "conditioning_embedding_out_channels": (16, 32, 96, 256),
                "use_linear_projection": False, "projection_class_embeddings_input_dim": None, "layers_per_block": 2}
    for key in STRUCTURE_KEYS:
        theirs = candidate.get(key, defaults.get(key))
        ours = config.get(key, defaults.get(key))
        if _plain(theirs) != _plain(ours):
            return False
    return True


def _plain(value: Any) -> Any:
    return tuple(value) if isinstance(value, list | tuple) else value


def _count(shapes: Shapes, pattern: str) -> int:
    regex = re.compile(pattern)
    found = {int(m.group(1)) for key in shapes if (m := regex.match(key))}
    return max(found) + 1 if found else 0


def _shape(shapes: Shapes, key: str, path: object) -> Sequence[int]:
    if key not in shapes:
        raise ModelFileError(path, f"ControlNet weight {key!r} is missing")
    return shapes[key]
