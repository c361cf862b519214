"""Which Stable Diffusion family a single-file (LDM/ComfyUI layout) checkpoint is, from its keys and shapes.

Works on ``{key: shape}`` (:func:`shapes_of_file` lists a safetensors file without loading a tensor). The family
comes from the UNet: a ``label_emb`` (``adm_in_channels``) means SDXL, whose base and refiner differ by the ratio
of that width to the context width (the refiner's 2560 = 2 x 1280; the base's 2816 = 11 x 256 with a 2048 context);
without it, linear transformer projections mean SD2 and 1x1 convolutions SD1. Nine input channels mean inpainting.
The text encoders, VAE and UNet present are listed by key prefix. A prediction hint is given where the file tells:
``edm_mean``/``edm_std`` (Playground 2.5: EDM), a ``v_pred`` key (v-prediction); SD2 files do not tell, so their
hint is None and :func:`prediction_from_filename` or the user decides.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from visionatrix.diffusion.checkpoints import unet_config
from visionatrix.errors import ModelFileError

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
UNET_ONLY_PREFIX = ""
"""A UNet saved alone (ComfyUI's ``diffusion_models`` folder) keeps the LDM names without a prefix."""
TEXT_ENCODER_LOCATIONS = (
    # (component, key prefix, a key after the prefix that shows the encoder is there)
    ("clip_l", "cond_stage_model.transformer.", "text_model.embeddings.token_embedding.weight"),
    ("clip_l", "cond_stage_model.transformer.", "embeddings.token_embedding.weight"),  # older transformers layout
    ("open_clip", "cond_stage_model.model.", "token_embedding.weight"),
    ("clip_l", "conditioner.embedders.0.transformer.", "text_model.embeddings.token_embedding.weight"),
    ("clip_g", "conditioner.embedders.1.model.", "token_embedding.weight"),
    ("clip_g", "conditioner.embedders.0.model.", "token_embedding.weight"),  # the refiner's only encoder
)
SDXL_TIME_EMBEDDINGS = {"sdxl": 6, "sdxl_refiner": 5}
"""Size/crop (and, for the refiner, aesthetic score) numbers SDXL embeds next to the pooled text embedding."""
SDXL_POOLED_PER_TIME_DIM = 5
"""The family's ratio: the pooled embedding is 5 times the width of one time embedding (1280 = 5 x 256)."""


class Family(enum.StrEnum):
    SD1 = "sd1"
    SD2 = "sd2"
    SDXL = "sdxl"
    SDXL_REFINER = "sdxl_refiner"
    SD3 = "sd3"
    FLUX = "flux"
    AURAFLOW = "auraflow"
    PIXART = "pixart"
    HUNYUAN_DIT = "hunyuan_dit"


class Prediction(enum.StrEnum):
    EPS = "eps"
    V = "v_prediction"
    EDM = "edm"


SAMPLE_SIZES = {Family.SD1: 64, Family.SD2: 96, Family.SDXL: 128, Family.SDXL_REFINER: 128}
"""The latent size each family was trained at (diffusers' ``sample_size``)."""


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint holds: its family, components (name -> key prefix) and UNet shape."""

    family: Family
    inpaint: bool
    components: dict[str, str]
    prediction: Prediction | None
    """What the file says about the model's prediction; None where it does not tell (SD2: eps or v)."""
    unet: unet_config.UnetConfig

    @property
    def head_width(self) -> int | None:
        """The attention head width of the family (None: SD1's fixed 8 heads)."""
        return None if self.family is Family.SD1 else unet_config.HEAD_WIDTH

    @property
    def addition_time_embed_dim(self) -> int | None:
        """SDXL's width of one size/crop embedding, by the family's ratio; None outside SDXL."""
        count = SDXL_TIME_EMBEDDINGS.get(self.family)
        if count is None or self.unet.adm_in_channels is None:
            return None
        return self.unet.adm_in_channels // (count + SDXL_POOLED_PER_TIME_DIM)


def shapes_of_file(path: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in the safetensors file ``path``, read from its header (no tensor is loaded)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}  # noqa: SIM118
    except OSError as exc:
        raise ModelFileError(path, f"cannot be read: {exc.strerror or exc}") from exc
    except Exception as exc:  # SafetensorError: truncated or not safetensors
        raise ModelFileError(path, f"not a readable safetensors file: {exc}") from exc


def shapes_of(state_dict: Mapping[str, object]) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of a loaded state dict."""
    return {key: tuple(getattr(value, "shape", ())) for key, value in state_dict.items()}


def detect(shapes: Mapping[str, Sequence[int]], path: object = "<state dict>") -> CheckpointInfo:
    """The family and contents of the checkpoint whose tensors have ``shapes``; :class:`ModelFileError` naming the
    key prefixes found when it is not a single-file SD1/SD2/SDXL checkpoint."""
    unet_prefix = next((prefix for prefix in (UNET_PREFIX, UNET_ONLY_PREFIX)
                        if f"{prefix}input_blocks.0.0.weight" in shapes), None)
    if unet_prefix is None:
        raise ModelFileError(path, f"not a Stable Diffusion checkpoint: no UNet ({UNET_PREFIX}*); found "
                                   f"{prefix_summary(shapes)}")
    unet_shapes = {key[len(unet_prefix):]: shape for key, shape in shapes.items() if key.startswith(unet_prefix)}
    config = unet_config.unet_config_from_shapes(unet_shapes, path)
    family = _family(config, path)
    components = {"unet": unet_prefix}
    if f"{VAE_PREFIX}encoder.conv_in.weight" in shapes:
        components["vae"] = VAE_PREFIX
    for name, prefix, marker in TEXT_ENCODER_LOCATIONS:
        if prefix + marker in shapes:
            components[name] = prefix
    return CheckpointInfo(family=family, inpaint=config.in_channels == 9, components=components,
                          prediction=_prediction(shapes, family), unet=config)


def _family(config: unet_config.UnetConfig, path: object) -> Family:
    adm = config.adm_in_channels
    if adm is None:
        return Family.SD2 if config.use_linear_projection else Family.SD1
    if config.use_linear_projection and adm == 2 * config.context_dim:
        return Family.SDXL_REFINER
    per_time = SDXL_TIME_EMBEDDINGS[Family.SDXL] + SDXL_POOLED_PER_TIME_DIM
    if config.use_linear_projection and adm % per_time == 0:
        return Family.SDXL
    raise ModelFileError(path, f"unknown UNet family: label_emb input width {adm} with context width "
                               f"{config.context_dim} is neither SDXL base nor refiner")


def _prediction(shapes: Mapping[str, Sequence[int]], family: Family) -> Prediction | None:
    if "edm_mean" in shapes and "edm_std" in shapes:
        return Prediction.EDM
    if "v_pred" in shapes:
        return Prediction.V
    return None if family is Family.SD2 else Prediction.EPS


def prediction_from_filename(name: str) -> Prediction | None:
    """A hint from a file's name where its weights tell nothing: ``v-pred``/``vpred``/``768-v`` (SD2 768-v) or
    Playground 2.5 (``playground`` with ``2.5``/``2_5``)."""
    lowered = name.lower()
    if "playground" in lowered and ("2.5" in lowered or "2_5" in lowered):
        return Prediction.EDM
    if any(hint in lowered for hint in ("v-pred", "vpred", "v_pred", "768-v")):
        return Prediction.V
    return None


def prefix_summary(shapes: Mapping[str, Sequence[int]], limit: int = 6) -> str:
    """The most common top-level key prefixes with their counts (``14 tensors under model: 12, conv_first: 2``), for
    errors naming what a file holds."""
    if not shapes:
        return "no tensors"
    counts = Counter(key.split(".", 1)[0] for key in shapes)
    parts = [f"{prefix}: {count}" for prefix, count in counts.most_common(limit)]
    if len(counts) > limit:
        parts.append(f"... {len(counts) - limit} more")
    return f"{len(shapes)} tensors under " + ", ".join(parts)
