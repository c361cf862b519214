"""Ancestral samplers for rectified-flow models (SD3, Flux, AuraFlow), where ``x_sigma = (1 - sigma)·x0 + sigma·n``.

The variance-exploding ancestral split (``sigma_down^2 + sigma_up^2 = sigma_next^2``) does not hold when the signal
shrinks with sigma, so for flow models ComfyUI swaps ``euler_ancestral`` and ``dpmpp_2s_ancestral`` for their
rectified-flow forms (the same here): step deterministically down to ``sigma_down = sigma_next·(1 + (sigma_next /
sigma - 1)·eta)``, then rescale by ``(1 - sigma_next) / (1 - sigma_down)`` and add fresh noise of standard deviation
``sqrt(sigma_next^2 - sigma_down^2·(1 - sigma_next)^2 / (1 - sigma_down)^2)``, which lands exactly on the marginal at
``sigma_next``. The deterministic part: Euler (the interpolation ``x·sigma_down/sigma + denoised·(1 -
sigma_down/sigma)``), or DPM-Solver++(2S) with its midpoint in the flow's log-SNR ``lambda = log((1 - sigma)/sigma)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from visionatrix.diffusion.sampling.guidance import DenoiseFn, StepCallback
from visionatrix.diffusion.sampling.noise import NoiseSampler

SIGMA_ONE_MIDPOINT = 0.9999
"""At sigma 1 the log-SNR is -inf: the 2S midpoint is taken just below it."""


def _split(sigma: Tensor, sigma_next: Tensor, eta: float) -> tuple[Tensor, Tensor, Tensor]:
    """(sigma_down, rescale, renoise) of one ancestral flow step."""
    down = sigma_next * (1 + (sigma_next / sigma - 1) * eta)
    alpha_next, alpha_down = 1 - sigma_next, 1 - down
    renoise = (sigma_next**2 - down**2 * alpha_next**2 / alpha_down**2).clamp(min=0) ** 0.5
    return down, alpha_next / alpha_down, renoise


def _towards(x: Tensor, denoised: Tensor, sigma: Tensor, target: Tensor) -> Tensor:
    """The flow ODE's exact step from ``sigma`` to ``target`` for a constant denoised estimate."""
    ratio = target / sigma
    return ratio * x + (1 - ratio) * denoised


def euler_ancestral_rf(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler,
                       callback: StepCallback | None = None, eta: float = 1.0, s_noise: float = 1.0,
                       **options: Any) -> Tensor:
    total = len(sigmas) - 1
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            down, rescale, renoise = _split(sigma, sigma_next, eta)
            x = _towards(x, denoised, sigma, down)
            if eta > 0:
                x = rescale * x + noise_sampler(sigma, sigma_next) * s_noise * renoise
        if callback is not None:
            callback(i, total, x, denoised)
    return x


def dpmpp_2s_ancestral_rf(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler,
                          callback: StepCallback | None = None, eta: float = 1.0, s_noise: float = 1.0,
                          **options: Any) -> Tensor:
    total = len(sigmas) - 1
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        down, rescale, renoise = _split(sigma, sigma_next, eta)
        if sigma_next == 0:
            x = x + (x - denoised) / sigma * (down - sigma)
        else:
            if float(sigma) >= 1.0:
                mid = torch.as_tensor(SIGMA_ONE_MIDPOINT, dtype=sigma.dtype, device=sigma.device)
            else:
                log_snr, log_snr_down = _log_snr(sigma), _log_snr(down)
                mid = torch.sigmoid(-(log_snr + (log_snr_down - log_snr) / 2))
            x_mid = _towards(x, denoised, sigma, mid)
            x = _towards(x, denoise(x_mid, mid), sigma, down)
            if eta > 0:
                x = rescale * x + noise_sampler(sigma, sigma_next) * s_noise * renoise
        if callback is not None:
            callback(i, total, x, denoised)
    return x


def _log_snr(sigma: Tensor) -> Tensor:
    return ((1 - sigma) / sigma).log()


FLOW_VARIANTS = {"euler_ancestral": euler_ancestral_rf, "dpmpp_2s_ancestral": dpmpp_2s_ancestral_rf}
"""Samplers replaced by their rectified-flow forms on flow models (as ComfyUI does)."""
