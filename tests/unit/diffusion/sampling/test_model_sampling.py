"""Model sampling types: sigma tables, timesteps and the conversion of raw outputs, against diffusers and formulas."""

from __future__ import annotations

import math

import pytest
import torch

from visionatrix.diffusion.sampling import model_sampling as msm

# diffusers 0.42 converts a torch tensor with np.array(copy=False) semantics that numpy 2 deprecates
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _sd_sigmas() -> torch.Tensor:
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    ac = scheduler.alphas_cumprod
    return ((1 - ac) / ac) ** 0.5


def test_discrete_sigma_table_equals_diffusers_scaled_linear_betas():
    ms = msm.discrete("eps")
    torch.testing.assert_close(ms.sigmas, _sd_sigmas().float(), rtol=2e-5, atol=0)  # diffusers: float32 betas
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    ac = torch.cumprod(1 - betas, 0)
    torch.testing.assert_close(ms.sigmas, (((1 - ac) / ac) ** 0.5).float())
    assert float(ms.sigma_min) == pytest.approx(0.029168, rel=1e-4)
    assert float(ms.sigma_max) == pytest.approx(14.6146, rel=1e-4)


def test_discrete_timestep_of_a_table_sigma_is_its_index_and_sigma_of_a_timestep_inverts_it():
    schedule = msm.DiscreteSchedule()
    index = torch.tensor([0, 1, 250, 500, 998, 999])
    torch.testing.assert_close(schedule.timestep(schedule.sigmas[index]), index.float(), atol=2e-3, rtol=0)
    t = torch.tensor([0.5, 10.25, 499.75, 998.5])
    torch.testing.assert_close(schedule.timestep(schedule.sigma(t)), t, atol=2e-3, rtol=0)


def test_discrete_timestep_interpolates_log_sigma_between_neighbours():
    schedule = msm.DiscreteSchedule()
    lo, hi = schedule.log_sigmas[400], schedule.log_sigmas[401]
    sigma = torch.exp(lo + 0.3 * (hi - lo))
    assert float(schedule.timestep(sigma)) == pytest.approx(400.3, abs=1e-3)
    assert float(schedule.timestep(torch.tensor(1000.0))) == pytest.approx(999.0)


def test_eps_and_v_prediction_match_the_vp_formulas():
    x, out = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0)).unbind(0)
    sigma = torch.tensor(2.5)
    alpha_vp, sigma_vp = 1 / math.sqrt(1 + 2.5**2), 2.5 / math.sqrt(1 + 2.5**2)
    x_vp = x * alpha_vp
    eps = msm.discrete("eps")
    torch.testing.assert_close(eps.denoised(x, sigma, out), (x_vp - sigma_vp * out) / alpha_vp)
    torch.testing.assert_close(eps.scale_input(x, sigma), x_vp)
    v = msm.discrete("v_prediction")
    torch.testing.assert_close(v.denoised(x, sigma, out), alpha_vp * x_vp - sigma_vp * out)


def test_edm_preconditioning_equals_diffusers_edm_scheduler():
    from diffusers import EDMEulerScheduler

    reference = EDMEulerScheduler(sigma_min=0.002, sigma_max=120.0, sigma_data=0.5, prediction_type="epsilon")
    ms = msm.edm()
    x, out = torch.randn(2, 1, 4, 5, 5, generator=torch.Generator().manual_seed(1)).unbind(0)
    sigma = torch.tensor(3.0)
    torch.testing.assert_close(ms.denoised(x, sigma, out), reference.precondition_outputs(x, out, sigma))
    torch.testing.assert_close(ms.scale_input(x, sigma), reference.precondition_inputs(x, sigma))
    torch.testing.assert_close(ms.timestep(sigma), torch.as_tensor(reference.precondition_noise(sigma)).float())
    assert float(ms.sigma_min) == pytest.approx(0.002) and float(ms.sigma_max) == pytest.approx(120.0)


def test_lcm_denoised_applies_the_boundary_condition_scalings_of_diffusers_lcm():
    from diffusers import LCMScheduler

    reference = LCMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, timestep_scaling=10.0)
    ms = msm.discrete("lcm")
    sigma = ms.sigmas[20]
    timestep = round(float(ms.timestep(sigma)))
    assert timestep == 20 * 20 + 19
    c_skip, c_out = reference.get_scalings_for_boundary_condition_discrete(timestep)
    x, out = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(2)).unbind(0)
    expected = c_out * (x - out * sigma) + c_skip * x
    torch.testing.assert_close(ms.denoised(x, sigma, out), expected, rtol=1e-4, atol=1e-5)


def test_lcm_timestep_is_the_nearest_distilled_timestep_in_log_sigma():
    schedule = msm.discrete("lcm").schedule
    assert len(schedule.sigmas) == 50
    full = msm.DiscreteSchedule()
    torch.testing.assert_close(schedule.sigmas, full.sigmas[19::20])
    near_low = torch.exp(full.log_sigmas[419] * 0.8 + full.log_sigmas[439] * 0.2)
    near_high = torch.exp(full.log_sigmas[419] * 0.3 + full.log_sigmas[439] * 0.7)
    torch.testing.assert_close(schedule.timestep(torch.stack([near_low, near_high])), torch.tensor([419.0, 439.0]))
    assert float(schedule.sigma(torch.tensor(429.0))) == pytest.approx(
        math.exp((float(full.log_sigmas[419]) + float(full.log_sigmas[439])) / 2), rel=1e-5)


def test_flow_sigma_is_the_shifted_time_and_the_network_gets_sigma_times_1000():
    ms = msm.flow(shift=3.0)
    t = torch.tensor([0.1, 0.5, 0.9, 1.0])
    torch.testing.assert_close(ms.sigma(t * 1000), 3 * t / (1 + 2 * t))
    torch.testing.assert_close(ms.timestep(torch.tensor([0.25, 0.75])), torch.tensor([250.0, 750.0]))
    assert float(ms.sigma_max) == pytest.approx(1.0)
    x, out = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(3)).unbind(0)
    torch.testing.assert_close(ms.denoised(x, torch.tensor(0.4), out), x - 0.4 * out)
    torch.testing.assert_close(ms.scale_input(x, torch.tensor(0.4)), x)


def test_noise_scaling_starts_eps_models_at_sqrt_one_plus_sigma_squared_only_from_sigma_max():
    ms = msm.discrete("eps")
    noise, latent = torch.ones(1, 4, 2, 2), torch.full((1, 4, 2, 2), 0.5)
    sigma = ms.sigma_max
    full = ms.noise_scaling(sigma, noise, latent, max_denoise=True)
    torch.testing.assert_close(full, noise * math.sqrt(1 + float(sigma) ** 2) + latent)
    partial = ms.noise_scaling(torch.tensor(3.0), noise, latent, max_denoise=False)
    torch.testing.assert_close(partial, noise * 3.0 + latent)
    torch.testing.assert_close(ms.inverse_noise_scaling(torch.tensor(3.0), partial), partial)


def test_flow_noise_scaling_interpolates_and_its_inverse_divides_by_one_minus_sigma():
    ms = msm.flow(shift=1.0)
    noise, latent = torch.full((1, 2), 2.0), torch.full((1, 2), -1.0)
    start = ms.noise_scaling(torch.tensor(0.25), noise, latent)
    torch.testing.assert_close(start, torch.full((1, 2), 0.25 * 2.0 + 0.75 * -1.0))
    torch.testing.assert_close(ms.inverse_noise_scaling(torch.tensor(0.25), latent), latent / 0.75)


def test_is_max_denoise_only_when_sigmas_start_at_sigma_max():
    ms = msm.discrete("eps")
    assert ms.is_max_denoise(torch.tensor([float(ms.sigma_max), 0.0]))
    assert ms.is_max_denoise(torch.tensor([float(ms.sigma_max) * 1.5, 0.0]))
    assert not ms.is_max_denoise(torch.tensor([5.0, 0.0]))


def test_discrete_refuses_prediction_types_of_other_schedules():
    with pytest.raises(ValueError, match="discrete models"):
        msm.discrete("flow")
