"""Sigma schedules against diffusers' schedulers (where one exists) and the closed formulas."""

from __future__ import annotations

import math

import pytest
import torch

from visionatrix.diffusion.sampling import model_sampling as msm
from visionatrix.diffusion.sampling import schedules

SD_BETAS = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)

# diffusers 0.42 converts a torch tensor with np.array(copy=False) semantics that numpy 2 deprecates
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _diffusers_sigmas(steps: int, **options: object) -> torch.Tensor:
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler(**SD_BETAS, **options)
    scheduler.set_timesteps(steps)
    return scheduler.sigmas


@pytest.mark.parametrize(("name", "options"), [
    ("normal", {"timestep_spacing": "linspace"}),
    ("simple", {"timestep_spacing": "trailing"}),
    ("ddim_uniform", {"timestep_spacing": "leading", "steps_offset": 1}),
    ("karras", {"use_karras_sigmas": True}),
    ("exponential", {"use_exponential_sigmas": True}),
])
@pytest.mark.parametrize("steps", [10, 25])
def test_schedule_equals_the_matching_diffusers_euler_spacing(name, options, steps):
    ours = schedules.sigmas(name, msm.discrete(), steps)
    reference = _diffusers_sigmas(steps, **options)
    assert ours.shape == (steps + 1,) and ours[-1] == 0
    torch.testing.assert_close(ours, reference, rtol=3e-5, atol=1e-6)


def test_sgm_uniform_is_trailing_within_a_percent_and_drops_the_last_timestep_point():
    ms = msm.discrete()
    ours = schedules.sigmas("sgm_uniform", ms, 10)
    torch.testing.assert_close(ours, _diffusers_sigmas(10, timestep_spacing="trailing"), rtol=1e-2, atol=1e-6)
    timesteps = torch.linspace(999.0, 0.0, 11)[:-1]
    torch.testing.assert_close(ours[:-1], ms.sigma(timesteps))


def test_karras_follows_the_rho_7_formula_between_sigma_min_and_max():
    ms = msm.discrete()
    lo, hi = float(ms.sigma_min), float(ms.sigma_max)
    expected = [(hi ** (1 / 7) + i / 5 * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7 for i in range(6)] + [0.0]
    torch.testing.assert_close(schedules.sigmas("karras", ms, 6), torch.tensor(expected))


def test_exponential_is_evenly_spaced_in_log_sigma():
    ms = msm.edm()
    out = schedules.sigmas("exponential", ms, 5)
    ratios = out[1:-1] / out[:-2]
    torch.testing.assert_close(ratios, torch.full((4,), (0.002 / 120.0) ** 0.25), rtol=1e-4, atol=0)


def test_kl_optimal_is_linear_in_arctan_sigma():
    ms = msm.discrete()
    out = schedules.sigmas("kl_optimal", ms, 8)
    angles = torch.atan(out[:-1].double())
    expected = torch.linspace(math.atan(float(ms.sigma_max)), math.atan(float(ms.sigma_min)), 8, dtype=torch.float64)
    torch.testing.assert_close(angles, expected, rtol=1e-5, atol=1e-6)
    assert out[-1] == 0


def test_linear_quadratic_is_linear_to_the_threshold_then_a_smooth_quadratic_to_zero():
    ms = msm.flow(shift=1.0)
    steps, threshold = 10, 0.025
    out = schedules.sigmas("linear_quadratic", ms, steps).double()
    time = 1 - out
    torch.testing.assert_close(time[:6], torch.arange(6, dtype=torch.float64) * threshold / 5, rtol=0, atol=1e-6)
    second_differences = time[2:] - 2 * time[1:-1] + time[:-2]
    assert torch.allclose(second_differences[:4], torch.zeros(4, dtype=torch.float64), atol=1e-6)
    curvature = second_differences[5:]
    assert torch.allclose(curvature, curvature[0].expand_as(curvature), atol=1e-6) and curvature[0] > 0
    assert out[0] == 1.0 and out[-1] == 0 and torch.all(out[1:] < out[:-1])


def test_beta_schedule_reads_the_table_at_beta_quantiles():
    from scipy import stats

    ms = msm.discrete()
    out = schedules.sigmas("beta", ms, 10)
    picked = out[:-1]
    indices = [int(torch.argmin((ms.sigmas - s).abs())) for s in picked]
    assert indices[0] == 999 and torch.all(torch.tensor(indices[1:]) < torch.tensor(indices[:-1]))
    quantiles = [float(stats.beta.cdf(i / 999, 0.6, 0.6)) for i in indices]
    torch.testing.assert_close(torch.tensor(quantiles), 1 - torch.arange(10) / 10, rtol=0, atol=2e-3)


def test_simple_takes_every_nth_table_sigma_from_the_top():
    ms = msm.discrete()
    out = schedules.sigmas("simple", ms, 4)
    torch.testing.assert_close(out, torch.stack([ms.sigmas[999], ms.sigmas[749], ms.sigmas[499], ms.sigmas[249],
                                                 torch.tensor(0.0)]))


def test_ddim_uniform_gives_one_more_step_when_the_stride_does_not_divide_the_table():
    out = schedules.sigmas("ddim_uniform", msm.discrete(), 7)
    assert len(out) == 9  # indices 1, 143, ..., 995: eight sigmas and the final 0, as ComfyUI's


def test_denoise_keeps_the_last_steps_of_a_longer_schedule():
    ms = msm.discrete()
    out = schedules.for_denoise("karras", ms, 10, 0.5)
    torch.testing.assert_close(out, schedules.sigmas("karras", ms, 20)[-11:])
    assert len(schedules.for_denoise("karras", ms, 10, 0.0)) == 0


def test_samplers_that_discard_the_penultimate_sigma_get_one_step_more():
    ms = msm.discrete()
    out = schedules.ksampler_sigmas("normal", ms, 10, "dpm_2")
    longer = schedules.sigmas("normal", ms, 11)
    torch.testing.assert_close(out, torch.cat([longer[:-2], longer[-1:]]))
    torch.testing.assert_close(schedules.ksampler_sigmas("normal", ms, 10, "euler"), schedules.sigmas("normal", ms, 10))


def test_slice_steps_ends_at_zero_unless_leftover_noise_is_returned():
    full = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    torch.testing.assert_close(schedules.slice_steps(full, 1, 3, leftover_noise=True), torch.tensor([4.0, 3.0, 2.0]))
    torch.testing.assert_close(schedules.slice_steps(full, 1, 3, leftover_noise=False), torch.tensor([4.0, 3.0, 0.0]))
    torch.testing.assert_close(schedules.slice_steps(full, 2), torch.tensor([3.0, 2.0, 1.0, 0.0]))
    assert len(schedules.slice_steps(full, 5)) == 0
    assert full[3] == 2.0


def test_split_shares_the_boundary_sigma_and_flip_replaces_a_leading_zero():
    full = torch.tensor([3.0, 2.0, 1.0, 0.0])
    high, low = schedules.split_sigmas(full, 2)
    torch.testing.assert_close(high, torch.tensor([3.0, 2.0, 1.0]))
    torch.testing.assert_close(low, torch.tensor([1.0, 0.0]))
    torch.testing.assert_close(schedules.flip_sigmas(full), torch.tensor([1e-4, 1.0, 2.0, 3.0]))


def test_unknown_schedule_and_zero_steps_are_refused():
    with pytest.raises(ValueError, match="unknown schedule"):
        schedules.sigmas("cosine", msm.discrete(), 10)
    with pytest.raises(ValueError, match="steps"):
        schedules.sigmas("normal", msm.discrete(), 0)
