"""Samplers against diffusers' schedulers given identical sigmas, and against the exact answer of a Gaussian.

For data N(mu, s^2) the exact denoiser is ``mu + s^2 / (s^2 + sigma^2) (x - mu)`` and the probability-flow ODE keeps
``(x - mu) / sqrt(s^2 + sigma^2)`` constant, so every deterministic sampler must land on ``mu + s n``, and the
stochastic ones must produce samples with mean mu and standard deviation s.
"""

from __future__ import annotations

import math

import pytest
import torch

from visionatrix.diffusion.sampling import model_sampling as msm
from visionatrix.diffusion.sampling import noise, samplers, schedules
from visionatrix.diffusion.sampling.guidance import Denoiser

# diffusers 0.42 converts a torch tensor with np.array(copy=False) semantics that numpy 2 deprecates
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

MU, S = 0.3, 0.7
SD_BETAS = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
DETERMINISTIC = ["euler", "heun", "dpm_2", "lms", "dpmpp_2m", "ddim", "uni_pc", "uni_pc_bh2"]


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return MU + S**2 / (S**2 + sigma**2) * (x - MU)


def _eps_of(sample_vp: torch.Tensor, sigma: float) -> torch.Tensor:
    """The Gaussian's exact eps prediction for a diffusers (variance-preserving) sample at ``sigma``."""
    x = sample_vp * math.sqrt(1 + sigma**2)
    return (x - gaussian_denoiser(x, torch.tensor(sigma))) / sigma


def _gaussian_start(shape: tuple[int, ...], sigma_max: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    n = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return MU + n * math.sqrt(S**2 + sigma_max**2), MU + S * n


def _tiny_unet():
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8).eval()


def test_euler_on_a_tiny_unet_equals_diffusers_euler_discrete_with_comfy_noise_scaling():
    from diffusers import EulerDiscreteScheduler

    unet = _tiny_unet()
    context = torch.randn(1, 4, 32, generator=torch.Generator().manual_seed(1))
    scheduler = EulerDiscreteScheduler(**SD_BETAS, timestep_spacing="linspace")
    scheduler.set_timesteps(6)
    ms = msm.discrete("eps")
    start_noise = noise.prepare_noise((1, 4, 8, 8), 123)
    with torch.no_grad():
        sample = start_noise * math.sqrt(1 + float(scheduler.sigmas[0]) ** 2)
        for t in scheduler.timesteps:
            eps = unet(scheduler.scale_model_input(sample, t), t, encoder_hidden_states=context).sample
            sample = scheduler.step(eps, t, sample).prev_sample

        def model(x_in, timestep, **cond):
            return unet(x_in, timestep, **cond).sample

        denoise = Denoiser(model, ms, cond={"encoder_hidden_states": context})
        sigmas = scheduler.sigmas.float()
        x = ms.noise_scaling(sigmas[0], start_noise, torch.zeros(1, 4, 8, 8), max_denoise=ms.is_max_denoise(sigmas))
        ours = samplers.SAMPLERS["euler"](denoise, x, sigmas, noise_sampler=None)
    torch.testing.assert_close(ours, sample, rtol=0, atol=5e-5)
    assert float(sample.abs().max()) > 0.1


def _diffusers_loop(scheduler, start: torch.Tensor, sigmas: torch.Tensor, **step_options) -> torch.Tensor:
    sample = start.clone()
    for i, t in enumerate(scheduler.timesteps):
        sample = scheduler.step(_eps_of(sample, float(sigmas[i])), t, sample, **step_options).prev_sample
    return sample


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_uni_pc_equals_diffusers_unipc_multistep(variant, order):
    from diffusers import UniPCMultistepScheduler

    scheduler = UniPCMultistepScheduler(**SD_BETAS, solver_order=order, solver_type=variant,
                                        final_sigmas_type="sigma_min")
    scheduler.set_timesteps(8)
    sigmas = scheduler.sigmas.double()
    start = torch.randn(2, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = _diffusers_loop(scheduler, start, sigmas)
    name = "uni_pc" if variant == "bh1" else "uni_pc_bh2"
    ours = samplers.SAMPLERS[name](gaussian_denoiser, start * math.sqrt(1 + float(sigmas[0]) ** 2), sigmas,
                                   noise_sampler=None, order=order)
    alpha_last = 1 / math.sqrt(1 + float(sigmas[-1]) ** 2)  # diffusers' sample is variance-preserving
    torch.testing.assert_close(ours * alpha_last, expected, rtol=0, atol=1e-6)


def test_dpmpp_2m_equals_diffusers_dpmsolver_plus_plus_second_order():
    from diffusers import DPMSolverMultistepScheduler

    scheduler = DPMSolverMultistepScheduler(**SD_BETAS, use_karras_sigmas=True, algorithm_type="dpmsolver++",
                                            solver_order=2, final_sigmas_type="zero")
    scheduler.set_timesteps(8)
    sigmas = scheduler.sigmas.double()
    start = torch.randn(2, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = _diffusers_loop(scheduler, start, sigmas)
    ours = samplers.SAMPLERS["dpmpp_2m"](gaussian_denoiser, start * math.sqrt(1 + float(sigmas[0]) ** 2), sigmas,
                                         noise_sampler=None)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)


def test_dpmpp_2m_sde_equals_diffusers_sde_dpmsolver_plus_plus_given_the_same_noise_stream():
    from diffusers import DPMSolverMultistepScheduler

    scheduler = DPMSolverMultistepScheduler(**SD_BETAS, use_karras_sigmas=True, solver_order=2,
                                            algorithm_type="sde-dpmsolver++", final_sigmas_type="zero")
    scheduler.set_timesteps(8)
    sigmas = scheduler.sigmas.double()
    start = torch.randn(2, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expected = _diffusers_loop(scheduler, start, sigmas, generator=torch.Generator().manual_seed(9))
    x = start * math.sqrt(1 + float(sigmas[0]) ** 2)
    ours = samplers.SAMPLERS["dpmpp_2m_sde"](gaussian_denoiser, x, sigmas,
                                             noise_sampler=noise.AncestralNoiseSampler(x, 9))
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)


def test_euler_ancestral_equals_diffusers_euler_ancestral_given_the_same_noise_stream():
    from diffusers import EulerAncestralDiscreteScheduler

    scheduler = EulerAncestralDiscreteScheduler(**SD_BETAS)
    scheduler.set_timesteps(8)
    sigmas = scheduler.sigmas.double()
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * float(sigmas[0])
    sample, generator = x.clone(), torch.Generator().manual_seed(9)
    for i, t in enumerate(scheduler.timesteps):  # diffusers' Euler schedulers keep x unscaled, as ours
        scheduler.scale_model_input(sample, t)
        eps = (sample - gaussian_denoiser(sample, sigmas[i])) / sigmas[i]
        sample = scheduler.step(eps, t, sample, generator=generator).prev_sample
    ours = samplers.SAMPLERS["euler_ancestral"](gaussian_denoiser, x, sigmas,
                                                noise_sampler=noise.AncestralNoiseSampler(x, 9))
    torch.testing.assert_close(ours, sample, rtol=0, atol=1e-6)


def test_euler_on_a_flow_model_equals_diffusers_flow_match_euler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    ms = msm.flow(shift=3.0)
    weight = torch.tensor([[0.9, -0.2], [0.1, 0.7]])

    def velocity(x_in, timestep):
        return x_in @ weight + (timestep / 1000).reshape(-1, 1)

    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)
    plain = torch.linspace(1.0, 1 / 6, 6)
    sigmas = ms.sigma(plain * 1000)
    scheduler.set_timesteps(sigmas=sigmas.tolist())
    start = torch.randn(3, 2, generator=torch.Generator().manual_seed(4))
    sample = start.clone()
    for t in scheduler.timesteps:
        sample = scheduler.step(velocity(sample, t.expand(3)), t, sample).prev_sample
    ours = samplers.SAMPLERS["euler"](Denoiser(velocity, ms), ms.noise_scaling(scheduler.sigmas[0], start,
                                      torch.zeros(3, 2)), scheduler.sigmas, noise_sampler=None)
    torch.testing.assert_close(ours, sample, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_sampler_converges_to_the_exact_ode_solution(name):
    sigmas = schedules.sigmas("karras", msm.discrete(), 30).double()
    x, exact = _gaussian_start((64,), float(sigmas[0]))
    out = samplers.SAMPLERS[name](gaussian_denoiser, x, sigmas, noise_sampler=None)
    tolerance = 0.15 if name in ("euler", "ddim") else 0.015
    assert float((out - exact).abs().max()) < tolerance


def test_higher_order_samplers_beat_euler_at_the_same_steps():
    sigmas = schedules.sigmas("karras", msm.discrete(), 10).double()
    x, exact = _gaussian_start((64,), float(sigmas[0]))

    def error(name: str) -> float:
        return float((samplers.SAMPLERS[name](gaussian_denoiser, x, sigmas, noise_sampler=None) - exact).abs().max())

    euler_error = error("euler")
    for name in ("heun", "dpm_2", "lms", "dpmpp_2m", "uni_pc", "uni_pc_bh2"):
        assert error(name) < 0.5 * euler_error, name


@pytest.mark.parametrize("name", ["euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde",
                                  "dpmpp_2m_sde", "dpmpp_3m_sde"])
def test_stochastic_sampler_draws_from_the_data_distribution(name):
    sigmas = schedules.sigmas("karras", msm.discrete(), 30).double()
    x, _ = _gaussian_start((1, 20000), float(sigmas[0]))
    if name in samplers.BROWNIAN:
        noise_sampler = noise.BrownianNoiseSampler(x, float(sigmas[-2]), float(sigmas[0]), seed=1)
    else:
        noise_sampler = noise.AncestralNoiseSampler(x, seed=1)
    out = samplers.SAMPLERS[name](gaussian_denoiser, x, sigmas, noise_sampler=noise_sampler)
    assert float(out.mean()) == pytest.approx(MU, abs=0.02)
    assert float(out.std()) == pytest.approx(S, rel=0.12 if name == "euler_ancestral" else 0.03)


@pytest.mark.parametrize("name", sorted(samplers.STOCHASTIC))
def test_stochastic_sampler_repeats_for_a_seed_and_changes_with_another(name):
    sigmas = schedules.sigmas("normal", msm.discrete(), 4)
    x = noise.prepare_noise((1, 4, 4, 4), 0) * float(sigmas[0])

    def run(seed: int) -> torch.Tensor:
        if name in samplers.BROWNIAN:
            noise_sampler = noise.BrownianNoiseSampler(x, float(sigmas[-2]), float(sigmas[0]), seed)
        else:
            noise_sampler = noise.AncestralNoiseSampler(x, seed)
        return samplers.SAMPLERS[name](gaussian_denoiser, x, sigmas, noise_sampler=noise_sampler)

    torch.testing.assert_close(run(5), run(5), rtol=0, atol=0)
    assert not torch.allclose(run(5), run(6))


@pytest.mark.parametrize("name", sorted(samplers.SAMPLERS))
def test_sampler_reports_every_step_to_the_callback(name):
    sigmas = schedules.sigmas("karras", msm.discrete(), 5)
    x = noise.prepare_noise((1, 4, 4, 4), 0) * float(sigmas[0])
    seen: list[tuple[int, int]] = []
    samplers.SAMPLERS[name](gaussian_denoiser, x, sigmas, noise_sampler=noise.AncestralNoiseSampler(x, 0),
                            callback=lambda step, total, x_, denoised: seen.append((step, total)))
    assert seen == [(i, 5) for i in range(5)]


def test_registry_holds_comfyui_sampler_names():
    assert {"euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpmpp_2s_ancestral", "dpmpp_sde",
            "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde", "ddim", "uni_pc", "uni_pc_bh2", "lcm"} <= set(samplers.SAMPLERS)
    assert samplers.SAMPLERS["ddim"] is samplers.SAMPLERS["euler"]
