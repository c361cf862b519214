"""A ControlNet file (LDM single file or diffusers layout) as a diffusers ``ControlNetModel``, offline.

The config comes from the file's shapes and its family's rules (:mod:`.detect`); a ``config.json`` for a
``ControlNetModel`` beside the file (``<name>.json`` or ``config.json`` in its folder) is used instead when it
describes the same network as the shapes, which keeps what shapes cannot tell (heads, global pooling, channel order).
LDM keys are renamed with diffusers' pure ``convert_controlnet_checkpoint`` for the UNet half; the hint encoder and
SDXL's ``label_emb`` are renamed here (diffusers' converter assumes four hint stages and skips ``label_emb``).
Weights load strictly: a missing, unexpected or misshapen one is a :class:`ModelFileError` naming a few.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatrix.diffusion.checkpoints import weights_fit
from visionatrix.diffusion.checkpoints.detect import shapes_of
from visionatrix.diffusion.controlnet import detect

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

SHUFFLE_SUFFIXES = ("_shuffle", "_shuffle_fp16")
"""ComfyUI pools the residuals of files named ``*_shuffle`` (the shuffle ControlNet was trained that way)."""
LABEL_EMB = {"label_emb.0.0": "add_embedding.linear_1", "label_emb.0.2": "add_embedding.linear_2"}


def build_controlnet(state_dict: Mapping[str, Tensor], path: object = "<state dict>") -> Module:
    """The ``ControlNetModel`` of ``state_dict`` (a ControlNet file's tensors), float32 on the CPU, in eval mode."""
    from diffusers import ControlNetModel

    info = detect.detect(shapes_of(state_dict), path)
    config = detect.diffusers_config(info, path)
    beside = _json_config_beside(path, config)
    if beside is not None:
        config = beside
    elif isinstance(path, str | Path) and Path(path).stem.endswith(SHUFFLE_SUFFIXES):
        config["global_pool_conditions"] = True
    own = {key[len(info.prefix):]: value for key, value in state_dict.items() if key.startswith(info.prefix)}
    weights = ldm_to_diffusers(own, config) if info.layout == "ldm" else own
    model: Any = ControlNetModel(**config)
    weights_fit.load_strictly(model, weights, path, "ControlNet")
    return model.eval()


def ldm_to_diffusers(weights: Mapping[str, Tensor], config: Mapping[str, Any]) -> dict[str, Tensor]:
    """LDM ``cldm.ControlNet`` keys (no prefix) -> ``ControlNetModel`` keys."""
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    hint = set(detect.hint_convolutions(weights, "ldm"))
    unet_half = {key: value for key, value in weights.items()
                 if key.rsplit(".", 1)[0] not in hint and not key.startswith("label_emb.")}
    converted = convert_controlnet_checkpoint(unet_half, dict(config))
    out = {key: value for key, value in converted.items()
           if value is not None and not key.startswith("controlnet_cond_embedding.")}
    convs = detect.hint_convolutions(weights, "ldm")
    names = ["conv_in", *(f"blocks.{index}" for index in range(len(convs) - 2)), "conv_out"]
    for old, new in zip(convs, names, strict=True):
        for param in ("weight", "bias"):
            if f"{old}.{param}" in weights:
                out[f"controlnet_cond_embedding.{new}.{param}"] = weights[f"{old}.{param}"]
    for old, new in LABEL_EMB.items():
        for param in ("weight", "bias"):
            if f"{old}.{param}" in weights:
                out[f"{new}.{param}"] = weights[f"{old}.{param}"]
    return out


def _json_config_beside(path: object, config: Mapping[str, Any]) -> dict[str, Any] | None:
    """A ``ControlNetModel`` config stored beside ``path`` that fits its shapes, as constructor arguments."""
    if not isinstance(path, str | Path):
        return None
    file = Path(path)
    from diffusers import ControlNetModel

    accepted = set(inspect.signature(ControlNetModel.__init__).parameters) - {"self"}
    for candidate in (file.with_suffix(".json"), file.parent / "config.json"):
        try:
            loaded = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(loaded, dict) and detect.json_config_fits(loaded, config):
            return {key: value for key, value in loaded.items() if key in accepted}
    return None

