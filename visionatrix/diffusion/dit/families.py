"""The transformer families in one table: how each is detected, built, sampled, which latent space it uses and which
text encoders (components of an all-in-one file) it has.

| family | files | sampling | latents | text |
| --- | --- | --- | --- | --- |
| Flux.1 dev/Kontext/Fill | BFL or diffusers | flow, shift exp(1.15), 10,000 steps, t = sigma | 16 ch | CLIP-L, T5 |
| Flux.1 schnell | same, no guidance | flow, shift 1, t = sigma | 16 ch (Flux) | same |
| SD3 / SD3.5 | MMDiT layout | flow, shift 3, t = sigma x 1000 | 16 ch (SD3) | CLIP-L + CLIP-G + T5-XXL |
| AuraFlow | AuraFlow's MMDiT names | flow, shift 1.73, t = sigma | SDXL's | Pile-T5-XL (LLaMA tokenizer) |
| PixArt Sigma / Alpha | PixArt's or diffusers' | discrete, linear betas, eps | SDXL's / SD1's | T5-XXL |
| HunyuanDiT 1.0-1.2 | Tencent's | discrete, scaled-linear betas, v | SDXL's | BERT (Chinese) + mT5-XL |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from visionatrix.diffusion import latent_formats
from visionatrix.diffusion.checkpoints.detect import Family
from visionatrix.diffusion.dit import auraflow, flux, hunyuan_dit, hunyuan_dit_text, pixart, sd3, sd3_components, t5
from visionatrix.diffusion.latent_formats import LatentFormat
from visionatrix.diffusion.sampling import model_sampling as sampling
from visionatrix.errors import ModelFileError

Shapes = Mapping[str, Sequence[int]]
SD3_SHIFT = 3.0
FLUX_SCHNELL_SHIFT = 1.0


@dataclass(frozen=True)
class FamilySpec:
    family: Family
    detect: Callable[[Shapes, object], Any]
    build: Callable[[Mapping[str, Any], Any, object], Any]
    sampling: Callable[[Any], sampling.ModelSampling]
    latent_format: Callable[[Any], LatentFormat]
    in_channels: Callable[[Any], int]
    text_builders: Mapping[str, Callable[[Mapping[str, Any], object], Any]] = field(default_factory=dict)
    """Component name -> builder of that text encoder from its tensors (component prefix removed)."""


def _flux_sampling(info: flux.FluxInfo) -> sampling.ModelSampling:
    return sampling.flux() if info.guidance else sampling.flow(FLUX_SCHNELL_SHIFT, 1.0)


PIXART_BETAS = (pixart.BETA_START, pixart.BETA_END)

SPECS: tuple[FamilySpec, ...] = (
    FamilySpec(Family.SD3, sd3.detect_sd3, sd3.build_sd3, lambda info: sampling.flow(SD3_SHIFT, 1000.0),
               lambda info: latent_formats.SD3, lambda info: info.in_channels,
               {"clip_l": sd3_components.build_clip_l, "clip_g": sd3_components.build_clip_g, "t5xxl": t5.build_t5}),
    FamilySpec(Family.FLUX, flux.detect_flux, flux.build_flux, _flux_sampling, lambda info: latent_formats.FLUX,
               lambda info: info.in_channels // 4,  # packed 2 x 2
               {"clip_l": sd3_components.build_clip_l, "t5xxl": t5.build_t5}),
    FamilySpec(Family.AURAFLOW, auraflow.detect_auraflow, auraflow.build_auraflow,
               lambda info: sampling.flow(auraflow.SHIFT, auraflow.MULTIPLIER), lambda info: latent_formats.SDXL,
               lambda info: info.in_channels, {"pile_t5xl": auraflow.build_auraflow_text_encoder}),
    FamilySpec(Family.HUNYUAN_DIT, hunyuan_dit.detect_hunyuan_dit, hunyuan_dit.build_hunyuan_dit,
               hunyuan_dit.model_sampling, lambda info: latent_formats.SDXL, lambda info: info.in_channels,
               {"hydit_clip": hunyuan_dit_text.build_bert, "mt5xl": hunyuan_dit_text.build_mt5}),
    FamilySpec(Family.PIXART, pixart.detect_pixart, pixart.build_pixart,
               lambda info: sampling.ModelSampling(sampling.DiscreteSchedule(*PIXART_BETAS, beta_schedule="linear"),
                                                   sampling.Prediction.EPS),
               lambda info: latent_formats.SD1 if info.variant == "alpha" else latent_formats.SDXL,
               lambda info: info.in_channels),
)
BY_FAMILY = {spec.family: spec for spec in SPECS}


def detect(shapes: Shapes, path: object) -> tuple[FamilySpec, Any] | None:
    """The family spec and info of the transformer a file holds; None when it holds none of these families (a
    detector's "not a ..." refusal), any other problem of a recognised file is raised."""
    for spec in SPECS:
        try:
            return spec, spec.detect(shapes, path)
        except ModelFileError as exc:
            if not str(exc).split(": ", 1)[-1].startswith("not "):
                raise
    return None
