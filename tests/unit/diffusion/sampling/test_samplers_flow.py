"""Ancestral samplers on rectified-flow models land on the flow's marginal ``(1 - sigma)·x0 + sigma·n``."""

from __future__ import annotations

import torch

from visionatrix.diffusion.sampling import ksampler, noise, samplers, samplers_flow
from visionatrix.diffusion.sampling import model_sampling as msm

X0 = 0.4


def oracle(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """A denoiser that knows the clean sample."""
    return torch.full_like(x, X0)


def test_one_ancestral_step_keeps_the_signal_and_gives_the_next_sigma_of_noise():
    generator = torch.Generator().manual_seed(0)
    n = torch.randn(200_000, generator=generator)
    sigmas = torch.tensor([0.8, 0.5])
    x = (1 - sigmas[0]) * X0 + sigmas[0] * n
    for function in (samplers_flow.euler_ancestral_rf, samplers_flow.dpmpp_2s_ancestral_rf):
        stream = torch.Generator().manual_seed(1)
        out = function(oracle, x, sigmas, noise_sampler=lambda *_, g=stream: torch.randn(x.shape, generator=g))
        residual = out - (1 - sigmas[1]) * X0
        assert abs(float(residual.mean())) < 5e-3
        assert abs(float(residual.std()) - 0.5) < 5e-3  # the VE split would give a different spread


def test_without_eta_the_step_is_the_flow_ode_and_ends_on_the_denoised_estimate():
    x = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    sigmas = torch.tensor([1.0, 0.6, 0.25, 0.0])

    def velocity_field(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return 0.3 * x + 0.1

    deterministic = samplers_flow.euler_ancestral_rf(velocity_field, x, sigmas, noise_sampler=None, eta=0.0)
    torch.testing.assert_close(deterministic, samplers.euler(velocity_field, x, sigmas))
    last = samplers_flow.euler_ancestral_rf(velocity_field, x, sigmas[-2:], noise_sampler=None)
    torch.testing.assert_close(last, velocity_field(x, sigmas[-2]))


def test_ksampler_uses_the_flow_forms_on_flow_models_only():
    sigmas = torch.tensor([1.0, 0.7, 0.3, 0.0])
    start = noise.prepare_noise((1, 4, 4, 4), 5)
    latent = torch.zeros(1, 4, 4, 4)
    flow = msm.flow(3.0, 1000.0)
    out = ksampler.sample(oracle, flow, "euler_ancestral", sigmas, latent, start, seed=5)
    x = flow.noise_scaling(sigmas[0], start, latent, True)
    expected = samplers_flow.euler_ancestral_rf(oracle, x, sigmas, noise_sampler=noise.AncestralNoiseSampler(x, 5))
    torch.testing.assert_close(out, flow.inverse_noise_scaling(sigmas[-1], expected))
    discrete = msm.discrete()
    ve = ksampler.sample(oracle, discrete, "euler_ancestral", sigmas, latent, start, seed=5)
    x = discrete.noise_scaling(sigmas[0], start, latent, discrete.is_max_denoise(sigmas))
    torch.testing.assert_close(ve, samplers.euler_ancestral(oracle, x, sigmas,
                                                            noise_sampler=noise.AncestralNoiseSampler(x, 5)))
