"""Single-step samplers on Karras et al.'s ODE ``dx/dsigma = (x - D(x, sigma)) / sigma`` and the registry.

Each sampler walks ``sigmas`` from the first to the last with ``denoise(x, sigma)`` and returns the final x;
``callback(step, total, x, denoised)`` runs after each step. Papers: Karras et al. 2022 (Algorithms 1/2: Euler,
Heun, the DPM-2 midpoint; the ancestral split), Lu et al. 2022 (DPM-Solver++ 2S), Luo et al. 2023 (LCM).
"ddim" is Euler: ComfyUI's DDIM is this sampler with the ``ddim_uniform`` schedule picked at the node level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from visionatrix.diffusion.sampling import samplers_multistep as multistep
from visionatrix.diffusion.sampling.guidance import DenoiseFn, StepCallback
from visionatrix.diffusion.sampling.noise import NoiseSampler

SamplerFn = Callable[..., Tensor]
"""``fn(denoise, x, sigmas, *, noise_sampler, callback=None, **options) -> x``."""


def ancestral_step(sigma: Tensor, sigma_next: Tensor, eta: float = 1.0) -> tuple[Tensor, Tensor]:
    """Split the step to ``sigma_next`` into a deterministic part down to ``sigma_down`` and fresh noise
    ``sigma_up`` with ``sigma_down^2 + sigma_up^2 = sigma_next^2`` (eta 1: the DDPM posterior variance)."""
    if not eta:
        return sigma_next, torch.zeros_like(sigma_next)
    up = torch.minimum(sigma_next, eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5)
    return (sigma_next**2 - up**2) ** 0.5, up


def _derivative(x: Tensor, denoised: Tensor, sigma: Tensor) -> Tensor:
    return (x - denoised) / sigma


def _report(callback: StepCallback | None, step: int, total: int, x: Tensor, denoised: Tensor) -> None:
    if callback is not None:
        callback(step, total, x, denoised)


def euler(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler | None = None,
          callback: StepCallback | None = None, **options: Any) -> Tensor:
    """Euler's method on the probability-flow ODE."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, sigmas[i])
        x = x + _derivative(x, denoised, sigmas[i]) * (sigmas[i + 1] - sigmas[i])
        _report(callback, i, total, x, denoised)
    return x


def euler_ancestral(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler,
                    callback: StepCallback | None = None, eta: float = 1.0, s_noise: float = 1.0,
                    **options: Any) -> Tensor:
    """Euler down to sigma_down, then noise of sigma_up added back."""
    total = len(sigmas) - 1
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        down, up = ancestral_step(sigma, sigma_next, eta)
        x = x + _derivative(x, denoised, sigma) * (down - sigma)
        if sigma_next > 0:
            x = x + noise_sampler(sigma, sigma_next) * s_noise * up
        _report(callback, i, total, x, denoised)
    return x


def heun(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler | None = None,
         callback: StepCallback | None = None, **options: Any) -> Tensor:
    """Heun's second-order method (trapezoid of the slopes at both ends); Euler for the last step to 0."""
    total = len(sigmas) - 1
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        slope = _derivative(x, denoised, sigma)
        step = sigma_next - sigma
        if sigma_next == 0:
            x = x + slope * step
        else:
            x_end = x + slope * step
            slope_end = _derivative(x_end, denoise(x_end, sigma_next), sigma_next)
            x = x + (slope + slope_end) / 2 * step
        _report(callback, i, total, x, denoised)
    return x


def _midpoint_step(denoise: DenoiseFn, x: Tensor, slope: Tensor, sigma: Tensor, target: Tensor) -> Tensor:
    """DPM-2: the slope at the log-midpoint between sigma and target, applied over the whole step."""
    mid = ((sigma.log() + target.log()) / 2).exp()
    x_mid = x + slope * (mid - sigma)
    return x + _derivative(x_mid, denoise(x_mid, mid), mid) * (target - sigma)


def dpm_2(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler | None = None,
          callback: StepCallback | None = None, **options: Any) -> Tensor:
    """DPM-Solver-2 in sigma (Karras et al.'s midpoint variant); Euler for the last step to 0."""
    total = len(sigmas) - 1
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        slope = _derivative(x, denoised, sigma)
        if sigma_next == 0:
            x = x + slope * (sigma_next - sigma)
        else:
            x = _midpoint_step(denoise, x, slope, sigma, sigma_next)
        _report(callback, i, total, x, denoised)
    return x


def dpm_2_ancestral(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler,
                    callback: StepCallback | None = None, eta: float = 1.0, s_noise: float = 1.0,
                    **options: Any) -> Tensor:
    """DPM-2 down to sigma_down, then noise of sigma_up."""
    total = len(sigmas) - 1
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        down, up = ancestral_step(sigma, sigma_next, eta)
        slope = _derivative(x, denoised, sigma)
        x = x + slope * (down - sigma) if down == 0 else _midpoint_step(denoise, x, slope, sigma, down)
        if sigma_next > 0:
            x = x + noise_sampler(sigma, sigma_next) * s_noise * up
        _report(callback, i, total, x, denoised)
    return x


def dpmpp_2s_ancestral(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler,
                       callback: StepCallback | None = None, eta: float = 1.0, s_noise: float = 1.0,
                       **options: Any) -> Tensor:
    """DPM-Solver++(2S) (single-step, second order, midpoint in lambda = -log sigma) down to sigma_down."""
    total = len(sigmas) - 1
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        down, up = ancestral_step(sigma, sigma_next, eta)
        if down == 0:
            x = x + _derivative(x, denoised, sigma) * (down - sigma)
        else:
            h = sigma.log() - down.log()
            mid = (sigma.log() - h / 2).exp()
            x_mid = (mid / sigma) * x - torch.expm1(-h / 2) * denoised
            x = (down / sigma) * x - torch.expm1(-h) * denoise(x_mid, mid)
        if sigma_next > 0:
            x = x + noise_sampler(sigma, sigma_next) * s_noise * up
        _report(callback, i, total, x, denoised)
    return x


def dpmpp_sde(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler,
              callback: StepCallback | None = None, eta: float = 1.0, s_noise: float = 1.0, r: float = 0.5,
              **options: Any) -> Tensor:
    """DPM-Solver++ SDE, two stages per step: an ancestral first-order step to lambda + r h, then the full step
    with the blend ``(1 - 1/(2r)) D + 1/(2r) D_mid``, each followed by Brownian noise of its sigma_up."""
    total = len(sigmas) - 1
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        if sigma_next == 0:
            x = x + _derivative(x, denoised, sigma) * (sigma_next - sigma)
        else:
            h = sigma.log() - sigma_next.log()
            mid = (sigma.log() - r * h).exp()
            x_mid = _ancestral_exp_step(x, denoised, sigma, mid, eta)
            x_mid = x_mid + noise_sampler(sigma, mid) * s_noise * ancestral_step(sigma, mid, eta)[1]
            weight = 1 / (2 * r)
            blended = (1 - weight) * denoised + weight * denoise(x_mid, mid)
            x = _ancestral_exp_step(x, blended, sigma, sigma_next, eta)
            x = x + noise_sampler(sigma, sigma_next) * s_noise * ancestral_step(sigma, sigma_next, eta)[1]
        _report(callback, i, total, x, denoised)
    return x


def _ancestral_exp_step(x: Tensor, denoised: Tensor, sigma: Tensor, target: Tensor, eta: float) -> Tensor:
    """First-order data-prediction step (exact for constant D) from sigma down to target's sigma_down."""
    down = ancestral_step(sigma, target, eta)[0]
    return (down / sigma) * x - torch.expm1(down.log() - sigma.log()) * denoised


def lcm(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler,
        callback: StepCallback | None = None, noise_scaling: Callable[[Tensor, Tensor, Tensor], Tensor] | None = None,
        **options: Any) -> Tensor:
    """LCM multistep sampling: jump to the consistency estimate, then re-noise it to the next sigma
    (``noise_scaling(sigma, noise, latent)``, the model sampling's; default ``latent + noise * sigma``)."""
    total = len(sigmas) - 1
    for i in range(total):
        denoised = denoise(x, sigmas[i])
        x = denoised
        if sigmas[i + 1] > 0:
            noise = noise_sampler(sigmas[i], sigmas[i + 1])
            x = noise_scaling(sigmas[i + 1], noise, x) if noise_scaling else x + noise * sigmas[i + 1]
        _report(callback, i, total, x, denoised)
    return x


SAMPLERS: dict[str, SamplerFn] = {
    "euler": euler,
    "euler_ancestral": euler_ancestral,
    "heun": heun,
    "dpm_2": dpm_2,
    "dpm_2_ancestral": dpm_2_ancestral,
    "lms": multistep.lms,
    "dpmpp_2s_ancestral": dpmpp_2s_ancestral,
    "dpmpp_sde": dpmpp_sde,
    "dpmpp_2m": multistep.dpmpp_2m,
    "dpmpp_2m_sde": multistep.dpmpp_2m_sde,
    "dpmpp_3m_sde": multistep.dpmpp_3m_sde,
    "ddim": euler,
    "uni_pc": multistep.uni_pc,
    "uni_pc_bh2": multistep.uni_pc_bh2,
    "lcm": lcm,
}
"""Sampler name (ComfyUI's) to function."""

STOCHASTIC = frozenset({"euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde",
                        "dpmpp_3m_sde", "lcm"})
BROWNIAN = frozenset({"dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"})
"""Samplers that take a noise sampler; the BROWNIAN ones want a :class:`BrownianNoiseSampler`."""
