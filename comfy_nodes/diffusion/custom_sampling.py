"""ComfyUI's custom-sampling nodes: sampling split into its parts (noise, guider, sampler, sigmas) and recombined.

``SamplerCustom`` is KSampler with the sampler and the sigmas given as inputs (``KSamplerSelect`` + ``BasicScheduler``
give KSampler's latent); ``SamplerCustomAdvanced`` also takes the noise (``RandomNoise``, ``DisableNoise``) and the
guider (``CFGGuider``, ``BasicGuider``, ``DualCFGGuider``). Both return the sampled latent and the last denoised
estimate. Schedulers build SIGMAS (float32 CPU tensors, highest first, usually ending in 0): ``BasicScheduler`` (the
KSampler schedules with denoise), ``KarrasScheduler`` and ``ExponentialScheduler`` (closed forms between given
extremes), ``AlignYourStepsScheduler`` (NVIDIA's published levels, see
:mod:`visionatrix.diffusion.sampling.align_your_steps`), ``SDTurboScheduler`` (timesteps 999, 899, ... from the top);
``SplitSigmas`` and ``FlipSigmas`` edit them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from visionatrix.diffusion import run
from visionatrix.diffusion.guiders import Guider, cfg_guider
from visionatrix.diffusion.sampling import align_your_steps, schedules
from visionatrix.errors import InvalidInput

from .sampling_nodes import MAX_SEED, SAMPLER_NAMES, SCHEDULER_NAMES, check_model, noise_for, sampler_algorithm

SD_SIGMA_MAX, SD_SIGMA_MIN = 14.614642, 0.0291675
"""KarrasScheduler's and ExponentialScheduler's defaults: SD's sigma extremes."""
TURBO_TIMESTEPS = tuple(range(999, 0, -100))
"""SDTurboScheduler's timesteps: 999, 899, ..., 99 (SD-Turbo's 10 distillation points)."""
CFG = ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01})
SIGMA_INPUT = {"default": 0.0, "min": 0.0, "max": 5000.0, "step": 0.01, "round": False}
STEPS = ("INT", {"default": 20, "min": 1, "max": 10000})
DENOISE = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})


@dataclass(frozen=True)
class Sampler:
    """SAMPLER: a sampler of :data:`visionatrix.diffusion.sampling.samplers.SAMPLERS` and its options."""

    name: str
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class RandomNoise:
    """NOISE: ComfyUI's initial noise for a seed (one CPU ``randn`` of the latent's shape; ``batch_index`` kept)."""

    seed: int

    def generate_noise(self, latent: dict[str, Any]) -> Tensor:
        return noise_for(latent, self.seed)

    generate = generate_noise


@dataclass(frozen=True)
class EmptyNoise:
    """NOISE: zeros (sampling starts from the latent as it is); seed 0 for the stochastic samplers."""

    seed: int = 0

    def generate_noise(self, latent: dict[str, Any]) -> Tensor:
        return noise_for(latent, 0, enabled=False)

    generate = generate_noise


@dataclass(frozen=True)
class NestedDualGuider(Guider):
    """DualCFGGuider's "nested" style: CFG of cond1 over cond2, then CFG of that over the negative."""

    kind: str = "dual_nested"

    def needed(self) -> list[str]:
        return ["cond1", "cond2", "negative"]

    def combine(self, out: Mapping[str, Tensor]) -> Tensor:
        text = out["cond2"] + (out["cond1"] - out["cond2"]) * self.cfg
        return out["negative"] + (text - out["negative"]) * self.cfg2


def _sampler(value: Any) -> Sampler:
    if not isinstance(value, Sampler):
        raise InvalidInput("sampler", f"expected a SAMPLER (from KSamplerSelect), got {type(value).__name__}")
    return value


def _sigmas(value: Any) -> Tensor:
    if not isinstance(value, Tensor) or value.ndim != 1:
        shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
        raise InvalidInput("sigmas", f"expected SIGMAS (a 1-D tensor of noise levels), got {shape}")
    if not bool(torch.isfinite(value).all()) or bool((value < 0).any()):
        raise InvalidInput("sigmas", "noise levels must be finite and not negative")
    return value.float().cpu()


def _conditioning(value: Any, name: str) -> Any:
    if not isinstance(value, list | tuple) or not value:
        raise InvalidInput(name, f"expected CONDITIONING (a non-empty list of [tensor, options]), got "
                                 f"{type(value).__name__}")
    return value


def _guider(value: Any) -> Guider:
    if not isinstance(value, Guider):
        raise InvalidInput("guider", f"expected a GUIDER (CFGGuider, BasicGuider, DualCFGGuider), got "
                                     f"{type(value).__name__}")
    return value


def _sample(guider: Guider, sampler: Any, sigmas: Any, latent: Any, seed: int,
            make_noise: Callable[[dict[str, Any]], Tensor]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(output, denoised_output) LATENTs of one run; fewer than two sigmas leave the latent as it is."""
    sampler, sigmas = _sampler(sampler), _sigmas(sigmas)
    latent = run.fit_empty_latent(latent, guider.model)
    run.check_latent(latent, guider.model)
    out = dict(latent)
    if len(sigmas) < 2:
        return out, dict(out)
    samples, denoised = run.sample(guider, sampler_name=sampler.name, sigmas=sigmas, latent=latent,
                                   noise=make_noise(latent), seed=int(seed),
                                   sampler_options=dict(sampler.options))
    out["samples"] = samples
    return out, {**latent, "samples": denoised}


class SamplerCustom:
    DESCRIPTION = "KSampler with the sampler and the noise levels (sigmas) given as inputs."
    CATEGORY = "sampling/custom_sampling"
    RETURN_TYPES = ("LATENT", "LATENT")
    RETURN_NAMES = ("output", "denoised_output")
    OUTPUT_TOOLTIPS = ("The sampled latent.", "The model's last estimate of the clean latent.")
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "model": ("MODEL",), "add_noise": ("BOOLEAN", {"default": True}),
            "noise_seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True}),
            "cfg": CFG, "positive": ("CONDITIONING",), "negative": ("CONDITIONING",), "sampler": ("SAMPLER",),
            "sigmas": ("SIGMAS",), "latent_image": ("LATENT",)}}

    def sample(self, model: Any, add_noise: bool, noise_seed: int, cfg: float, positive: Any, negative: Any,
               sampler: Any, sigmas: Any, latent_image: Any) -> tuple[Any, Any]:
        guider = cfg_guider(check_model(model), _conditioning(positive, "positive"),
                            _conditioning(negative, "negative"), cfg)
        source = RandomNoise(int(noise_seed)) if add_noise else EmptyNoise()
        return _sample(guider, sampler, sigmas, latent_image, noise_seed, source.generate_noise)


class SamplerCustomAdvanced:
    DESCRIPTION = "Samples the latent with a given noise, guider, sampler and noise levels (sigmas)."
    CATEGORY = "sampling/custom_sampling"
    RETURN_TYPES = ("LATENT", "LATENT")
    RETURN_NAMES = ("output", "denoised_output")
    OUTPUT_TOOLTIPS = ("The sampled latent.", "The model's last estimate of the clean latent.")
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"noise": ("NOISE",), "guider": ("GUIDER",), "sampler": ("SAMPLER",),
                             "sigmas": ("SIGMAS",), "latent_image": ("LATENT",)}}

    def sample(self, noise: Any, guider: Any, sampler: Any, sigmas: Any, latent_image: Any) -> tuple[Any, Any]:
        guider = _guider(guider)
        if not callable(getattr(noise, "generate_noise", None)) or not isinstance(getattr(noise, "seed", None), int):
            raise InvalidInput("noise", f"expected a NOISE (RandomNoise, DisableNoise), got {type(noise).__name__}")
        return _sample(guider, sampler, sigmas, latent_image, noise.seed, noise.generate_noise)


class KSamplerSelect:
    DESCRIPTION = "Picks a sampling algorithm for SamplerCustom / SamplerCustomAdvanced."
    CATEGORY = "sampling/custom_sampling/samplers"
    RETURN_TYPES = ("SAMPLER",)
    FUNCTION = "get_sampler"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"sampler_name": (SAMPLER_NAMES,)}}

    def get_sampler(self, sampler_name: str) -> tuple[Sampler]:
        return (Sampler(sampler_algorithm(sampler_name)),)


class _Scheduler:
    CATEGORY = "sampling/custom_sampling/schedulers"
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"


class BasicScheduler(_Scheduler):
    DESCRIPTION = "The KSampler schedules for the model; denoise < 1 keeps the last steps of a longer schedule."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "scheduler": (SCHEDULER_NAMES,), "steps": STEPS,
                             "denoise": DENOISE}}

    def get_sigmas(self, model: Any, scheduler: str, steps: int, denoise: float) -> tuple[Tensor]:
        model = check_model(model)
        if scheduler not in schedules.SCHEDULES:
            raise InvalidInput("scheduler", f"unknown scheduler {scheduler!r}")
        return (schedules.for_denoise(scheduler, model.model_sampling, _steps(steps), float(denoise)).float().cpu(),)


class KarrasScheduler(_Scheduler):
    DESCRIPTION = "Karras et al.'s schedule: sigma_max to sigma_min evenly spaced in sigma^(1/rho), then 0."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"steps": STEPS, "sigma_max": ("FLOAT", {**SIGMA_INPUT, "default": SD_SIGMA_MAX}),
                             "sigma_min": ("FLOAT", {**SIGMA_INPUT, "default": SD_SIGMA_MIN}),
                             "rho": ("FLOAT", {"default": 7.0, "min": 0.0, "max": 100.0, "step": 0.01,
                                               "round": False})}}

    def get_sigmas(self, steps: int, sigma_max: float, sigma_min: float, rho: float) -> tuple[Tensor]:
        if rho <= 0:
            raise InvalidInput("rho", f"rho must be above 0, got {rho}")
        _non_negative(sigma_max=sigma_max, sigma_min=sigma_min)
        ramp = torch.linspace(0, 1, _steps(steps), dtype=torch.float64)
        high, low = float(sigma_max) ** (1 / rho), float(sigma_min) ** (1 / rho)
        return (_append_zero((high + ramp * (low - high)) ** rho),)


class ExponentialScheduler(_Scheduler):
    DESCRIPTION = "Noise levels evenly spaced in log-sigma from sigma_max to sigma_min, then 0."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"steps": STEPS, "sigma_max": ("FLOAT", {**SIGMA_INPUT, "default": SD_SIGMA_MAX}),
                             "sigma_min": ("FLOAT", {**SIGMA_INPUT, "default": SD_SIGMA_MIN})}}

    def get_sigmas(self, steps: int, sigma_max: float, sigma_min: float) -> tuple[Tensor]:
        for name, value in (("sigma_max", sigma_max), ("sigma_min", sigma_min)):
            if value <= 0:
                raise InvalidInput(name, f"the exponential schedule needs a positive {name}, got {value}")
        return (_append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), _steps(steps)).exp()),)


class AlignYourStepsScheduler(_Scheduler):
    DESCRIPTION = "NVIDIA's Align Your Steps noise levels (10 steps; log-linear interpolation for other counts)."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model_type": (align_your_steps.MODEL_TYPES,),
                             "steps": ("INT", {"default": 10, "min": 1, "max": 10000}), "denoise": DENOISE}}

    def get_sigmas(self, model_type: str, steps: int, denoise: float) -> tuple[Tensor]:
        if model_type not in align_your_steps.NOISE_LEVELS:
            raise InvalidInput("model_type", f"unknown model type {model_type!r}; known: "
                                             f"{', '.join(align_your_steps.MODEL_TYPES)}")
        return (align_your_steps.ays_sigmas(model_type, _steps(steps), float(denoise)),)


class SDTurboScheduler(_Scheduler):
    DESCRIPTION = "SD-Turbo's schedule: the model's sigmas at timesteps 999, 899, ... (one per step), then 0."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "steps": ("INT", {"default": 1, "min": 1, "max": 10}),
                             "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})}}

    def get_sigmas(self, model: Any, steps: int, denoise: float) -> tuple[Tensor]:
        model = check_model(model)
        if not 1 <= steps <= len(TURBO_TIMESTEPS):
            raise InvalidInput("steps", f"SD-Turbo takes 1 to {len(TURBO_TIMESTEPS)} steps, got {steps}")
        start = len(TURBO_TIMESTEPS) - int(len(TURBO_TIMESTEPS) * float(denoise))
        timesteps = torch.tensor(TURBO_TIMESTEPS[start:start + int(steps)], dtype=torch.float32)
        levels = model.model_sampling.sigma(timesteps) if len(timesteps) else torch.zeros(0)
        return (_append_zero(levels.float().cpu()),)


class RandomNoiseNode:
    DESCRIPTION = "Initial noise from a seed, drawn as ComfyUI draws it."
    CATEGORY = "sampling/custom_sampling/noise"
    RETURN_TYPES = ("NOISE",)
    FUNCTION = "get_noise"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"noise_seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED,
                                                    "control_after_generate": True})}}

    def get_noise(self, noise_seed: int) -> tuple[RandomNoise]:
        return (RandomNoise(int(noise_seed)),)


class DisableNoise:
    DESCRIPTION = "No initial noise: sampling starts from the latent as it is."
    CATEGORY = "sampling/custom_sampling/noise"
    RETURN_TYPES = ("NOISE",)
    FUNCTION = "get_noise"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {}}

    def get_noise(self) -> tuple[EmptyNoise]:
        return (EmptyNoise(),)


class CFGGuider:
    DESCRIPTION = "Classifier-free guidance: negative + (positive - negative) * cfg."
    CATEGORY = "sampling/custom_sampling/guiders"
    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "positive": ("CONDITIONING",), "negative": ("CONDITIONING",),
                             "cfg": CFG}}

    def get_guider(self, model: Any, positive: Any, negative: Any, cfg: float) -> tuple[Guider]:
        return (cfg_guider(check_model(model), _conditioning(positive, "positive"),
                           _conditioning(negative, "negative"), cfg),)


class BasicGuider:
    DESCRIPTION = "The model's estimate under one conditioning, without guidance."
    CATEGORY = "sampling/custom_sampling/guiders"
    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "conditioning": ("CONDITIONING",)}}

    def get_guider(self, model: Any, conditioning: Any) -> tuple[Guider]:
        return (Guider(check_model(model), {"positive": _conditioning(conditioning, "conditioning")}, "basic"),)


class DualCFGGuider:
    DESCRIPTION = ("Two-level guidance. regular: negative + (cond2 - negative) * cfg_cond2_negative + (cond1 - cond2) "
                   "* cfg_conds; nested: CFG of cond1 over cond2 at cfg_conds, then over the negative at "
                   "cfg_cond2_negative.")
    CATEGORY = "sampling/custom_sampling/guiders"
    RETURN_TYPES = ("GUIDER",)
    FUNCTION = "get_guider"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "cond1": ("CONDITIONING",), "cond2": ("CONDITIONING",),
                             "negative": ("CONDITIONING",), "cfg_conds": CFG, "cfg_cond2_negative": CFG},
                "optional": {"style": (["regular", "nested"],)}}

    def get_guider(self, model: Any, cond1: Any, cond2: Any, negative: Any, cfg_conds: float,
                   cfg_cond2_negative: float, style: str = "regular") -> tuple[Guider]:
        if style not in ("regular", "nested"):
            raise InvalidInput("style", f"unknown style {style!r}; known: regular, nested")
        conds = {"cond1": _conditioning(cond1, "cond1"), "cond2": _conditioning(cond2, "cond2"),
                 "negative": _conditioning(negative, "negative")}
        model = check_model(model)
        if style == "nested":
            return (NestedDualGuider(model, conds, cfg=float(cfg_conds), cfg2=float(cfg_cond2_negative)),)
        return (Guider(model, conds, "dual", float(cfg_conds), float(cfg_cond2_negative)),)


class SplitSigmas:
    DESCRIPTION = "Splits the sigmas at a step: both parts share the sigma at that step."
    CATEGORY = "sampling/custom_sampling/sigmas"
    RETURN_TYPES = ("SIGMAS", "SIGMAS")
    RETURN_NAMES = ("high_sigmas", "low_sigmas")
    FUNCTION = "get_sigmas"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"sigmas": ("SIGMAS",), "step": ("INT", {"default": 0, "min": 0, "max": 10000})}}

    def get_sigmas(self, sigmas: Any, step: int) -> tuple[Tensor, Tensor]:
        if step < 0:
            raise InvalidInput("step", f"step must not be negative, got {step}")
        return schedules.split_sigmas(_sigmas(sigmas), int(step))


class FlipSigmas:
    DESCRIPTION = "Reverses the sigmas (lowest first, for unsampling); a leading 0 becomes 0.0001."
    CATEGORY = "sampling/custom_sampling/sigmas"
    RETURN_TYPES = ("SIGMAS",)
    FUNCTION = "get_sigmas"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"sigmas": ("SIGMAS",)}}

    def get_sigmas(self, sigmas: Any) -> tuple[Tensor]:
        return (schedules.flip_sigmas(_sigmas(sigmas)),)


def _steps(steps: int) -> int:
    if steps < 1:
        raise InvalidInput("steps", f"steps must be at least 1, got {steps}")
    return int(steps)


def _non_negative(**values: float) -> None:
    for name, value in values.items():
        if value < 0:
            raise InvalidInput(name, f"{name} must not be negative, got {value}")


def _append_zero(values: Tensor) -> Tensor:
    return torch.cat([values.float(), torch.zeros(1)])


NODE_CLASS_MAPPINGS = {
    "SamplerCustom": SamplerCustom, "SamplerCustomAdvanced": SamplerCustomAdvanced, "KSamplerSelect": KSamplerSelect,
    "BasicScheduler": BasicScheduler, "KarrasScheduler": KarrasScheduler, "ExponentialScheduler": ExponentialScheduler,
    "AlignYourStepsScheduler": AlignYourStepsScheduler, "SDTurboScheduler": SDTurboScheduler,
    "RandomNoise": RandomNoiseNode, "DisableNoise": DisableNoise, "CFGGuider": CFGGuider, "BasicGuider": BasicGuider,
    "DualCFGGuider": DualCFGGuider, "SplitSigmas": SplitSigmas, "FlipSigmas": FlipSigmas,
}
NODE_DISPLAY_NAME_MAPPINGS = {name: name for name in NODE_CLASS_MAPPINGS} | {
    "CFGGuider": "CFG Guider", "BasicGuider": "Basic Guider", "DualCFGGuider": "Dual CFG Guider"}
