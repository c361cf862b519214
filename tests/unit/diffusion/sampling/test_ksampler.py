"""A whole KSampler run: start latent, the noise sampler picked per sampler, the final unscaling."""

from __future__ import annotations

import math

import pytest
import torch

from visionatrix.diffusion.sampling import ksampler, noise, samplers, schedules
from visionatrix.diffusion.sampling import model_sampling as msm

MU, S = 0.3, 0.7


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return MU + S**2 / (S**2 + sigma**2) * (x - MU)


def test_full_denoise_starts_from_noise_times_sqrt_one_plus_sigma_max_squared():
    ms = msm.discrete()
    sigmas = schedules.sigmas("karras", ms, 6)
    start_noise = noise.prepare_noise((1, 4, 4, 4), 1)
    out = ksampler.sample(gaussian_denoiser, ms, "euler", sigmas, torch.zeros(1, 4, 4, 4), start_noise, seed=1)
    x = start_noise * math.sqrt(1 + float(sigmas[0]) ** 2)
    torch.testing.assert_close(out, samplers.euler(gaussian_denoiser, x, sigmas))


def test_partial_denoise_adds_noise_times_the_first_sigma_to_the_latent():
    ms = msm.discrete()
    sigmas = schedules.for_denoise("normal", ms, 4, 0.5)
    latent, start_noise = torch.full((1, 4, 4, 4), 0.5), noise.prepare_noise((1, 4, 4, 4), 2)
    out = ksampler.sample(gaussian_denoiser, ms, "dpmpp_2m", sigmas, latent, start_noise, seed=2)
    torch.testing.assert_close(out, samplers.SAMPLERS["dpmpp_2m"](gaussian_denoiser, latent + start_noise * sigmas[0],
                                                                  sigmas, noise_sampler=None))


def test_sde_samplers_get_a_brownian_tree_over_the_positive_sigmas_seeded_by_the_seed():
    ms = msm.discrete()
    sigmas = schedules.sigmas("karras", ms, 5)
    start_noise = noise.prepare_noise((1, 4, 4, 4), 3)
    out = ksampler.sample(gaussian_denoiser, ms, "dpmpp_2m_sde", sigmas, torch.zeros(1, 4, 4, 4), start_noise, seed=7)
    x = start_noise * math.sqrt(1 + float(sigmas[0]) ** 2)
    tree = noise.BrownianNoiseSampler(x, float(sigmas[-2]), float(sigmas[0]), seed=7)
    torch.testing.assert_close(out, samplers.SAMPLERS["dpmpp_2m_sde"](gaussian_denoiser, x, sigmas, noise_sampler=tree))
    assert isinstance(ksampler.noise_sampler_for("euler_ancestral", x, sigmas, 7), noise.AncestralNoiseSampler)
    assert ksampler.noise_sampler_for("euler", x, sigmas, 7) is None


def test_lcm_on_a_flow_model_renoises_with_the_flow_interpolation_and_unscales_leftover_noise():
    ms = msm.flow(shift=1.0)
    sigmas = torch.tensor([1.0, 0.6, 0.3])
    start_noise = noise.prepare_noise((1, 2, 3), 4)
    out = ksampler.sample(gaussian_denoiser, ms, "lcm", sigmas, torch.zeros(1, 2, 3), start_noise, seed=4)
    renoise = noise.AncestralNoiseSampler(start_noise, 4)
    x = gaussian_denoiser(start_noise, sigmas[0])
    x = 0.6 * renoise(sigmas[0], sigmas[1]) + 0.4 * x
    x = gaussian_denoiser(x, sigmas[1])
    x = 0.3 * renoise(sigmas[1], sigmas[2]) + 0.7 * x
    torch.testing.assert_close(out, x / 0.7)


def test_nothing_to_sample_returns_the_latent_and_unknown_samplers_are_refused():
    latent = torch.ones(1, 4, 2, 2)
    assert ksampler.sample(gaussian_denoiser, msm.discrete(), "euler", torch.zeros(0), latent, latent, seed=0) is latent
    with pytest.raises(ValueError, match="unknown sampler"):
        ksampler.sample(gaussian_denoiser, msm.discrete(), "dpm_fast", torch.ones(3), latent, latent, seed=0)
