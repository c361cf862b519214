"""ModelSamplingDiscrete, ModelSamplingContinuousEDM and DifferentialDiffusion: how a MODEL samples, as ComfyUI's.

Each returns a copy of the model (the shared network is untouched) with another
:class:`~visionatrix.diffusion.sampling.model_sampling.ModelSampling` or option:

- ``ModelSamplingDiscrete``: SD's 1000-step scaled-linear table with eps or v-prediction, or LCM's 50-step distilled
  table; ``zsnr`` rescales the table to zero terminal SNR (Lin et al. 2023, "Common Diffusion Noise Schedules and
  Sample Steps are Flawed": sqrt(alpha_bar) shifted so the last is 0 and scaled so the first is kept), the last
  alpha_bar then set to 4.8973451890853435e-08 as ComfyUI does, so the top sigma is finite (about 4519).
- ``ModelSamplingContinuousEDM``: the continuous EDM schedule (1000 log-spaced sigmas from sigma_min to sigma_max,
  timestep ``log(sigma) / 4``) with v-prediction or eps (sigma_data 1), EDM preconditioning (sigma_data 0.5), or
  Playground 2.5 (EDM plus Playground's latent statistics: the model's own when it has them, else the published
  ``latents_mean``/``latents_std`` of Playground 2.5's VAE).
- ``DifferentialDiffusion``: a noise mask's values become per-step thresholds (the run's ``_differential``);
  ``strength`` in (0, 1) blends the thresholded mask with the soft one; 0 thresholds fully, like 1 (as ComfyUI).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from torch import Tensor

from visionatrix.diffusion import latent_formats
from visionatrix.diffusion.model import DiffusionModel
from visionatrix.diffusion.sampling.model_sampling import DiscreteSchedule, EDMSchedule, ModelSampling, Prediction
from visionatrix.errors import InvalidInput

from .sampling_nodes import check_model

DISCRETE_SAMPLING = ["eps", "v_prediction", "lcm", "x0", "img_to_img"]
EDM_SAMPLING = ["v_prediction", "edm", "edm_playground_v2.5", "eps", "cosmos_rflow"]
SUPPORTED_DISCRETE = {"eps": Prediction.EPS, "v_prediction": Prediction.V, "lcm": Prediction.LCM}
ZSNR_LAST_ALPHA_BAR = 4.8973451890853435e-08
PLAYGROUND_25_MEAN = (-1.6574, 1.886, -1.383, 2.5155)
PLAYGROUND_25_STD = (8.4927, 5.9022, 6.5498, 5.2299)
"""Playground 2.5's VAE ``latents_mean`` / ``latents_std`` (its published ``vae/config.json``)."""


def zero_terminal_snr(sigmas: Tensor) -> Tensor:
    """``sigmas`` (ascending) rescaled so the last timestep has (almost) zero signal, the first unchanged."""
    root = (1.0 / (sigmas * sigmas + 1.0)).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    alpha_bar = root * root
    alpha_bar[-1] = ZSNR_LAST_ALPHA_BAR
    return ((1.0 - alpha_bar) / alpha_bar).sqrt()


def discrete_sampling(sampling: str, zsnr: bool = False) -> ModelSampling:
    """ModelSamplingDiscrete's sampling for ``sampling`` (eps, v_prediction, lcm)."""
    if sampling not in SUPPORTED_DISCRETE:
        if sampling in DISCRETE_SAMPLING:
            raise InvalidInput("sampling", f"{sampling!r} sampling is not supported; use eps, v_prediction or lcm")
        raise InvalidInput("sampling", f"unknown sampling {sampling!r}; known: {', '.join(DISCRETE_SAMPLING)}")
    prediction = SUPPORTED_DISCRETE[sampling]
    schedule = DiscreteSchedule(original_steps=50 if prediction is Prediction.LCM else None)
    if zsnr:
        sigmas = zero_terminal_snr(schedule.sigmas.float())
        schedule.sigmas, schedule.log_sigmas = sigmas, sigmas.log()
        schedule.alphas_cumprod = 1.0 / (sigmas * sigmas + 1.0)
    return ModelSampling(schedule, prediction)


def continuous_edm_sampling(sampling: str, sigma_max: float, sigma_min: float) -> ModelSampling:
    """ModelSamplingContinuousEDM's sampling (the Playground latent format is the node's business)."""
    if sampling not in EDM_SAMPLING:
        raise InvalidInput("sampling", f"unknown sampling {sampling!r}; known: {', '.join(EDM_SAMPLING)}")
    if sampling == "cosmos_rflow":
        raise InvalidInput("sampling", "'cosmos_rflow' sampling (Cosmos video models) is not supported")
    if not sigma_min > 0:
        raise InvalidInput("sigma_min", f"sigma_min must be above 0, got {sigma_min}")
    if not sigma_max > sigma_min:
        raise InvalidInput("sigma_max", f"sigma_max ({sigma_max}) must be above sigma_min ({sigma_min})")
    if sampling in ("edm", "edm_playground_v2.5"):
        return ModelSampling(EDMSchedule(float(sigma_min), float(sigma_max), 0.5), Prediction.EDM)
    prediction = Prediction.V if sampling == "v_prediction" else Prediction.EPS
    return ModelSampling(EDMSchedule(float(sigma_min), float(sigma_max), 1.0), prediction)


def playground_latent_format(model: DiffusionModel) -> latent_formats.LatentFormat:
    """The model's Playground latent format when it has one (statistics from its file), else the published one."""
    if model.latent_format.name == "playground_edm":
        return model.latent_format
    if model.latent_format.channels != 4 or not model.is_sdxl:
        raise InvalidInput("model", f"Playground 2.5 sampling needs an SDXL-architecture model, got {model.family} "
                                    f"with {model.latent_format.channels}-channel latents")
    return latent_formats.playground_edm(PLAYGROUND_25_MEAN, PLAYGROUND_25_STD)


class ModelSamplingDiscrete:
    DESCRIPTION = ("Sets how the model's output is read on SD's discrete timesteps: eps, v-prediction or LCM; zsnr "
                   "rescales the noise schedule to zero terminal SNR.")
    CATEGORY = "advanced/model"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "sampling": (DISCRETE_SAMPLING,),
                             "zsnr": ("BOOLEAN", {"default": False})}}

    def patch(self, model: Any, sampling: str, zsnr: bool = False) -> tuple[DiffusionModel]:
        return (check_model(model).with_sampling(discrete_sampling(sampling, bool(zsnr))),)


class ModelSamplingContinuousEDM:
    DESCRIPTION = ("Samples on a continuous EDM schedule between sigma_min and sigma_max: v-prediction or eps "
                   "models (e.g. CosXL), EDM models, Playground 2.5 (EDM with its latent statistics).")
    CATEGORY = "advanced/model"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        sigma = {"min": 0.0, "max": 1000.0, "step": 0.001, "round": False}
        return {"required": {"model": ("MODEL",), "sampling": (EDM_SAMPLING,),
                             "sigma_max": ("FLOAT", {"default": 120.0, **sigma}),
                             "sigma_min": ("FLOAT", {"default": 0.002, **sigma})}}

    def patch(self, model: Any, sampling: str, sigma_max: float, sigma_min: float) -> tuple[DiffusionModel]:
        model = check_model(model)
        patched = model.with_sampling(continuous_edm_sampling(sampling, float(sigma_max), float(sigma_min)))
        if sampling == "edm_playground_v2.5":
            patched = dataclasses.replace(patched, latent_format=playground_latent_format(model))
        return (patched,)


class DifferentialDiffusion:
    DESCRIPTION = ("Inpainting with soft masks: a latent noise mask's value sets from which step each area is "
                   "denoised (strength blends the thresholded mask with the original).")
    CATEGORY = "_for_testing"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",)},
                "optional": {"strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def apply(self, model: Any, strength: float = 1.0) -> tuple[DiffusionModel]:
        strength = float(strength)
        if not 0.0 <= strength <= 1.0:
            raise InvalidInput("strength", f"strength must be within 0..1, got {strength}")
        # ComfyUI blends only for 0 < strength < 1: strength 0 thresholds fully, like 1
        return (check_model(model).with_option("differential_diffusion", strength or 1.0),)


NODE_CLASS_MAPPINGS = {"ModelSamplingDiscrete": ModelSamplingDiscrete,
                       "ModelSamplingContinuousEDM": ModelSamplingContinuousEDM,
                       "DifferentialDiffusion": DifferentialDiffusion}
NODE_DISPLAY_NAME_MAPPINGS = {"ModelSamplingDiscrete": "ModelSamplingDiscrete",
                              "ModelSamplingContinuousEDM": "ModelSamplingContinuousEDM",
                              "DifferentialDiffusion": "Differential Diffusion"}
