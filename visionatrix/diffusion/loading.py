"""Loading a single-file SD1/SD2/SDXL checkpoint into MODEL, CLIP and VAE through the model manager.

Each component (UNet, VAE, each text encoder) is its own entry in the model manager, built from only its own
tensors (a safetensors file reads nothing else), in its own dtype: on CUDA the UNet and text encoders in fp16, the
VAE in bf16 where the GPU has it (SDXL's VAE overflows in fp16) else fp32; on the CPU everything in fp32. A second
load of the same file is a ``stat()`` and lookups. The family and contents are read from the file's header first
(``detect``), so a file of the wrong kind is refused before any weight is read.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatrix.diffusion import latent_formats
from visionatrix.diffusion.checkpoints import convert, text_encoders
from visionatrix.diffusion.checkpoints.detect import (
    CheckpointInfo,
    Family,
    Prediction,
    detect,
    prediction_from_filename,
    shapes_of,
    shapes_of_file,
)
from visionatrix.diffusion.clip import TextEncoder
from visionatrix.diffusion.model import DiffusionModel
from visionatrix.diffusion.sampling import model_sampling as sampling
from visionatrix.errors import ModelError, ModelFileError
from visionatrix.nodes.state_dicts import SAFETENSORS_SUFFIXES, read_state_dict

if TYPE_CHECKING:
    from torch.nn import Module

    from visionatrix.nodes.context import NodeContext

SD2_V_PREDICTION_KEY = "output_blocks.11.1.transformer_blocks.0.norm1.bias"
SD2_V_PREDICTION_STD = 0.09
"""SD2 768-v and 512-base share shapes; the v model's last attention norm bias is spread wider (as ComfyUI tells)."""
EDM_KEYS = ("edm_mean", "edm_std")
TEXT_BUILDERS: dict[str, Callable[..., Module]] = {
    "clip_l": text_encoders.build_clip_l, "open_clip": text_encoders.build_open_clip,
    "clip_g": text_encoders.build_open_clip,
}


def manager_of(ctx: NodeContext) -> Any:
    # diffusers warns on every cast of a module that has no fp32-only parts ("should be kept in float32: []")
    logging.getLogger("diffusers.models.modeling_utils").setLevel(logging.ERROR)
    if ctx.models is None:
        raise ModelError("no model manager in this node context: model loaders run inside an executor")
    return ctx.models


@functools.lru_cache(maxsize=64)
def _info(path: str, _size: int, _mtime: int) -> CheckpointInfo:
    file = Path(path)
    shapes = shapes_of_file(file) if file.suffix.lower() in SAFETENSORS_SUFFIXES else shapes_of(read_state_dict(file))
    return detect(shapes, path)


def checkpoint_info(path: Path) -> CheckpointInfo:
    """What the checkpoint at ``path`` holds (cached per file version)."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise ModelFileError(path, f"cannot be read: {exc.strerror or exc}") from exc
    return _info(str(path), stat.st_size, stat.st_mtime_ns)


def dtypes(ctx: NodeContext) -> tuple[Any, Any]:
    """(dtype of networks, dtype of the VAE) on this context's device."""
    import torch

    if not ctx.device.startswith("cuda") or not torch.cuda.is_available():
        return torch.float32, torch.float32
    vae = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.float16, vae


def load_unet(ctx: NodeContext, path: Path, info: CheckpointInfo) -> DiffusionModel:
    """The checkpoint's diffusion model as MODEL, its prediction from the file (or its name; eps by default)."""
    net_dtype, _ = dtypes(ctx)
    prefix = info.components["unet"]

    def build(state_dict: dict[str, Any]) -> Module:
        unet = convert.build_unet(state_dict, info, path)
        stats = tuple(state_dict.get(key) for key in EDM_KEYS)
        unet.vix_edm_stats = None if None in stats else tuple(tuple(float(v) for v in t.flatten()) for t in stats)
        unet.vix_prediction = _prediction_from_weights(info, state_dict)
        return unet

    unet = manager_of(ctx).load(path, build, kind=f"{info.family}_unet", dtype=net_dtype,
                                prefixes=(prefix, *EDM_KEYS) if prefix else None)
    prediction = unet.vix_prediction or prediction_from_filename(Path(path).name) or Prediction.EPS
    if prediction is Prediction.EDM:
        stats = unet.vix_edm_stats
        latent = latent_formats.playground_edm(*stats) if stats else latent_formats.SDXL
        ms = sampling.edm()
    else:
        latent = latent_formats.SD1 if info.family in (Family.SD1, Family.SD2) else latent_formats.SDXL
        ms = sampling.discrete(sampling.Prediction.V if prediction is Prediction.V else sampling.Prediction.EPS)
    return DiffusionModel(unet=unet, family=info.family, in_channels=info.unet.in_channels, model_sampling=ms,
                          latent_format=latent, name=Path(path).name)


def _prediction_from_weights(info: CheckpointInfo, state_dict: dict[str, Any]) -> Prediction | None:
    """What the file's tensors tell of the prediction (None: nothing; then the file's name, then eps). The name is
    read per load, not kept with the shared module: a link under another name may tell otherwise."""
    if info.prediction is not None:
        return info.prediction
    weight = state_dict.get(info.components["unet"] + SD2_V_PREDICTION_KEY)
    if weight is not None and float(weight.float().std()) > SD2_V_PREDICTION_STD:
        return Prediction.V
    return None


def load_text_encoder(ctx: NodeContext, path: Path, info: CheckpointInfo) -> TextEncoder | None:
    """The checkpoint's text encoders as CLIP (None when it has none)."""
    from visionatrix.diffusion.text.embeddings import embedding_lookup

    net_dtype, _ = dtypes(ctx)
    manager = manager_of(ctx)
    encoders: dict[str, Module] = {}
    for name, build_one in TEXT_BUILDERS.items():
        prefix = info.components.get(name)
        if prefix is None:
            continue

        def build(state_dict: dict[str, Any], prefix: str = prefix, build_one: Callable[..., Module] = build_one,
                  ) -> Module:
            return build_one({key[len(prefix):]: value for key, value in state_dict.items()}, path)

        encoders[name] = manager.load(path, build, kind=f"{info.family}_{name}", dtype=net_dtype, prefixes=(prefix,))
    if not encoders:
        return None
    return TextEncoder(encoders=encoders, family=info.family, embeddings=embedding_lookup(ctx), use=manager.use)


def load_vae(ctx: NodeContext, path: Path, info: CheckpointInfo) -> Any:
    """The checkpoint's VAE as VAE (None when it has none)."""
    from visionatrix.diffusion.vae import Vae

    prefix = info.components.get("vae")
    if prefix is None:
        return None
    _, vae_dtype = dtypes(ctx)

    def build(state_dict: dict[str, Any]) -> Module:
        return convert.build_vae(state_dict, info, path)

    module = manager_of(ctx).load(path, build, kind=f"{info.family}_vae", dtype=vae_dtype,
                                  prefixes=(prefix, *EDM_KEYS))
    return Vae(module, name=Path(path).name)


TEXT_FILE_PREFIXES = ("cond_stage_model.transformer.", "cond_stage_model.model.",
                      "conditioner.embedders.0.transformer.", "conditioner.embedders.1.model.",
                      "conditioner.embedders.0.model.")
OPEN_CLIP_WIDTHS = {1024: Family.SD2, 1280: Family.SDXL_REFINER}
"""A lone OpenCLIP file: ViT-H conditions SD2, bigG alone the SDXL refiner (tiny test widths count as SD2)."""


def load_text_encoder_file(ctx: NodeContext, path: Path) -> TextEncoder:
    """A text encoder file of its own (CLIP-L in transformers' layout, OpenCLIP in open_clip's or transformers'
    layout with a projection) as CLIP; anything else is a :class:`ModelFileError` naming what it holds."""
    from visionatrix.diffusion.text.embeddings import embedding_lookup

    shapes = shapes_of_file(path) if path.suffix.lower() in SAFETENSORS_SUFFIXES else shapes_of(read_state_dict(path))
    prefix = next((p for p in TEXT_FILE_PREFIXES if any(key.startswith(p) for key in shapes)), "")
    keys = {key[len(prefix):]: shape for key, shape in shapes.items() if key.startswith(prefix)}
    if "token_embedding.weight" in keys:
        name, family, build_one = "open_clip", OPEN_CLIP_WIDTHS.get(keys["token_embedding.weight"][1], Family.SD2), \
            text_encoders.build_open_clip
        if family is Family.SDXL_REFINER:
            name = "clip_g"
    elif "text_projection.weight" in keys:
        width = keys.get("text_model.embeddings.token_embedding.weight", (0, 0))[1]
        name, family, build_one = ("clip_g", Family.SDXL_REFINER, _build_projected_clip) if width == 1280 else \
            ("open_clip", Family.SD2, _build_projected_clip)
    elif "text_model.embeddings.token_embedding.weight" in keys or "embeddings.token_embedding.weight" in keys:
        name, family, build_one = "clip_l", Family.SD1, text_encoders.build_clip_l
    else:
        sample = ", ".join(sorted(shapes)[:3])
        raise ModelFileError(path, f"not a CLIP text encoder: no token embedding found (keys {sample}, ...)")
    net_dtype, _ = dtypes(ctx)

    def build(state_dict: dict[str, Any]) -> Module:
        return build_one({key[len(prefix):]: value for key, value in state_dict.items()}, path)

    manager = manager_of(ctx)
    module = manager.load(path, build, kind=f"text_encoder_{name}", dtype=net_dtype)
    return TextEncoder(encoders={name: module}, family=family, embeddings=embedding_lookup(ctx), use=manager.use)


def _build_projected_clip(weights: dict[str, Any], path: object) -> Module:
    """A ``CLIPTextModelWithProjection`` from its own (transformers) layout, the config from shapes."""
    import re

    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from visionatrix.diffusion.checkpoints import weights_fit

    token = weights["text_model.embeddings.token_embedding.weight"]
    layer_key = re.compile(r"text_model\.encoder\.layers\.(\d+)\.")
    layers = 1 + max(int(m.group(1)) for key in weights if (m := layer_key.match(key)))
    hidden = int(token.shape[1])
    config = CLIPTextConfig(vocab_size=int(token.shape[0]), hidden_size=hidden, num_hidden_layers=layers,
                            intermediate_size=int(weights["text_model.encoder.layers.0.mlp.fc1.weight"].shape[0]),
                            num_attention_heads=max(1, hidden // text_encoders.HEAD_WIDTH),
                            max_position_embeddings=int(weights["text_model.embeddings.position_embedding.weight"]
                                                        .shape[0]),
                            projection_dim=int(weights["text_projection.weight"].shape[0]), hidden_act="gelu",
                            bos_token_id=int(token.shape[0]) - 2, eos_token_id=int(token.shape[0]) - 1)
    model = CLIPTextModelWithProjection(config)
    weights = {key: value for key, value in weights.items() if not key.endswith("position_ids")}
    weights_fit.load_strictly(model, weights, path, "text encoder")
    return model.eval()
