"""One sampling run as ComfyUI's KSampler does it: start latent, noise sampler, sampler, final unscaling."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from visionatrix.diffusion.sampling import samplers
from visionatrix.diffusion.sampling.guidance import DenoiseFn, StepCallback
from visionatrix.diffusion.sampling.model_sampling import ModelSampling, Prediction
from visionatrix.diffusion.sampling.noise import AncestralNoiseSampler, BrownianNoiseSampler, NoiseSampler
from visionatrix.diffusion.sampling.samplers_flow import FLOW_VARIANTS


def noise_sampler_for(sampler_name: str, x: Tensor, sigmas: Tensor, seed: int) -> NoiseSampler | None:
    """SDE samplers get a Brownian tree over the positive sigmas, other stochastic ones a seeded randn stream."""
    if sampler_name in samplers.BROWNIAN:
        positive = sigmas[sigmas > 0]
        return BrownianNoiseSampler(x, float(positive.min()), float(sigmas.max()), seed)
    if sampler_name in samplers.STOCHASTIC:
        return AncestralNoiseSampler(x, seed)
    return None


def sample(denoise: DenoiseFn, model_sampling: ModelSampling, sampler_name: str, sigmas: Tensor, latent: Tensor,
           noise: Tensor, *, seed: int, callback: StepCallback | None = None, **options: Any) -> Tensor:
    """Noise ``latent`` to ``sigmas[0]`` (``noise * sqrt(1 + sigma^2)`` when starting from sigma_max), walk the
    sigmas with ``sampler_name`` (its rectified-flow form on flow models, :mod:`.samplers_flow`) and undo the
    model's start scaling. Fewer than two sigmas: the latent as is."""
    if sampler_name not in samplers.SAMPLERS:
        raise ValueError(f"unknown sampler {sampler_name!r}; known: {', '.join(sorted(samplers.SAMPLERS))}")
    if len(sigmas) < 2:
        return latent
    x = model_sampling.noise_scaling(sigmas[0], noise, latent, model_sampling.is_max_denoise(sigmas))
    if sampler_name == "lcm":
        options.setdefault("noise_scaling", model_sampling.noise_scaling)
    function = samplers.SAMPLERS[sampler_name]
    if model_sampling.prediction is Prediction.FLOW:
        function = FLOW_VARIANTS.get(sampler_name, function)
    out = function(denoise, x, sigmas, noise_sampler=noise_sampler_for(
        sampler_name, x, sigmas, seed), callback=callback, **options)
    return model_sampling.inverse_noise_scaling(sigmas[-1], out)
