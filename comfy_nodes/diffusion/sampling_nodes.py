"""KSampler and KSamplerAdvanced: ComfyUI's sampling nodes on our schedules, samplers and sampling run.

Same seed, same latent as ComfyUI: the noise is ``torch.manual_seed(seed)`` then one float32 ``randn`` of the
latent's shape on the CPU (per ``batch_index`` for a cut batch), the sigmas are the scheduler's (``denoise < 1``
keeps the last steps of a longer schedule), guidance is CFG on the denoised estimates.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from visionatrix.diffusion import run
from visionatrix.diffusion.guiders import cfg_guider
from visionatrix.diffusion.model import DiffusionModel
from visionatrix.diffusion.sampling import schedules
from visionatrix.diffusion.sampling.noise import prepare_noise
from visionatrix.diffusion.sampling.samplers import SAMPLERS
from visionatrix.errors import InvalidInput

SAMPLER_ALIASES = {"dpmpp_sde_gpu": "dpmpp_sde", "dpmpp_2m_sde_gpu": "dpmpp_2m_sde", "dpmpp_3m_sde_gpu": "dpmpp_3m_sde"}
"""ComfyUI's ``*_gpu`` SDE samplers draw their Brownian noise on the GPU; ours always draw it on the CPU (the same
algorithm, another noise stream), so a graph naming them runs with the CPU-noise sampler."""
SAMPLER_NAMES = sorted([*SAMPLERS, *SAMPLER_ALIASES], key=lambda name: (name == "ddim", name))


def sampler_algorithm(name: str, input_name: str = "sampler_name") -> str:
    """The algorithm of a ComfyUI sampler name; :class:`InvalidInput` for an unknown one."""
    algorithm = SAMPLER_ALIASES.get(name, name)
    if algorithm not in SAMPLERS:
        raise InvalidInput(input_name, f"unknown sampler {name!r}")
    return algorithm
SCHEDULER_NAMES = list(schedules.SCHEDULES)
MAX_SEED = 0xFFFFFFFFFFFFFFFF


def check_model(model: Any) -> DiffusionModel:
    if not isinstance(model, DiffusionModel):
        raise InvalidInput("model", f"expected a MODEL (a diffusion model), got {type(model).__name__}")
    return model


def noise_for(latent: dict[str, Any], seed: int, enabled: bool = True) -> Tensor:
    """ComfyUI's initial noise for ``latent``: zeros when disabled."""
    samples = latent["samples"]
    if not enabled:
        return samples.new_zeros(samples.shape, device="cpu").float()
    return prepare_noise(samples.shape, int(seed), latent.get("batch_index"))


def ksample(model: Any, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str, positive: Any,
            negative: Any, latent: Any, denoise: float = 1.0, *, add_noise: bool = True, start_step: int = 0,
            last_step: int | None = None, force_full_denoise: bool = True) -> dict[str, Any]:
    """One KSampler(Advanced) run; the output LATENT keeps the input's mask and batch index."""
    model = check_model(model)
    latent = run.fit_empty_latent(latent, model)
    run.check_latent(latent, model)
    sampler_name = sampler_algorithm(sampler_name)
    if scheduler not in schedules.SCHEDULES:
        raise InvalidInput("scheduler", f"unknown scheduler {scheduler!r}")
    sigmas = schedules.ksampler_sigmas(scheduler, model.model_sampling, int(steps), sampler_name, float(denoise))
    if start_step or last_step is not None:
        sigmas = schedules.slice_steps(sigmas, int(start_step), last_step, leftover_noise=not force_full_denoise)
    out = dict(latent)
    if len(sigmas) < 2:
        return out
    samples, _ = run.sample(cfg_guider(model, positive, negative, cfg), sampler_name=sampler_name, sigmas=sigmas,
                            latent=latent, noise=noise_for(latent, seed, add_noise), seed=int(seed))
    out["samples"] = samples
    return out


def _common_inputs() -> dict[str, Any]:
    return {
        "steps": ("INT", {"default": 20, "min": 1, "max": 10000, "tooltip": "The number of denoising steps."}),
        "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01,
                          "tooltip": "Classifier-free guidance scale."}),
        "sampler_name": (SAMPLER_NAMES, {"tooltip": "The sampling algorithm."}),
        "scheduler": (SCHEDULER_NAMES, {"tooltip": "How the noise levels are spaced over the steps."}),
        "positive": ("CONDITIONING", {"tooltip": "What to include in the image."}),
        "negative": ("CONDITIONING", {"tooltip": "What to exclude from the image."}),
        "latent_image": ("LATENT", {"tooltip": "The latent image to denoise."}),
    }


class KSampler:
    DESCRIPTION = "Denoises the latent image with the model, guided by the positive and negative conditioning."
    CATEGORY = "sampling"
    RETURN_TYPES = ("LATENT",)
    OUTPUT_TOOLTIPS = ("The denoised latent.",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        inputs = {"model": ("MODEL", {"tooltip": "The model used for denoising the input latent."}),
                  "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True,
                                   "tooltip": "The random seed used for creating the noise."})}
        inputs |= _common_inputs()
        inputs["denoise"] = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                       "tooltip": "The amount of denoising applied; lower keeps more of the input."})
        return {"required": inputs}

    def sample(self, model: Any, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
               positive: Any, negative: Any, latent_image: Any, denoise: float = 1.0) -> tuple[Any]:
        return (ksample(model, seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                        denoise),)


class KSamplerAdvanced:
    DESCRIPTION = "KSampler with control over the noise and the window of steps (start/end, leftover noise)."
    CATEGORY = "sampling"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        inputs = {"model": ("MODEL",), "add_noise": (["enable", "disable"],),
                  "noise_seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True})}
        inputs |= _common_inputs()
        inputs |= {"start_at_step": ("INT", {"default": 0, "min": 0, "max": 10000}),
                   "end_at_step": ("INT", {"default": 10000, "min": 0, "max": 10000}),
                   "return_with_leftover_noise": (["disable", "enable"],)}
        return {"required": inputs}

    def sample(self, model: Any, add_noise: str, noise_seed: int, steps: int, cfg: float, sampler_name: str,
               scheduler: str, positive: Any, negative: Any, latent_image: Any, start_at_step: int,
               end_at_step: int, return_with_leftover_noise: str, denoise: float = 1.0) -> tuple[Any]:
        return (ksample(model, noise_seed, steps, cfg, sampler_name, scheduler, positive, negative, latent_image,
                        denoise, add_noise=add_noise != "disable", start_step=start_at_step, last_step=end_at_step,
                        force_full_denoise=return_with_leftover_noise != "enable"),)


NODE_CLASS_MAPPINGS = {"KSampler": KSampler, "KSamplerAdvanced": KSamplerAdvanced}
NODE_DISPLAY_NAME_MAPPINGS = {"KSampler": "KSampler", "KSamplerAdvanced": "KSampler (Advanced)"}
