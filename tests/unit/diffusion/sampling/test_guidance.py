"""Classifier-free guidance and the Denoiser that wraps a network for the samplers."""

from __future__ import annotations

import math

import torch

from visionatrix.diffusion.sampling import guidance
from visionatrix.diffusion.sampling import model_sampling as msm


class _RecordingModel:
    """An eps 'network' that returns ``x_in * weight`` and remembers what it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor, dict]] = []

    def __call__(self, x_in: torch.Tensor, timestep: torch.Tensor, **cond: object) -> torch.Tensor:
        self.calls.append((x_in, timestep, cond))
        return x_in * float(cond["weight"])  # type: ignore[arg-type]


def test_cfg_is_uncond_plus_scaled_difference():
    cond, uncond = torch.tensor([2.0, 1.0]), torch.tensor([1.0, 1.0])
    torch.testing.assert_close(guidance.cfg(cond, uncond, 7.5), torch.tensor([8.5, 1.0]))


def test_denoiser_scales_input_passes_the_timestep_and_converts_eps_output():
    ms = msm.discrete("eps")
    model = _RecordingModel()
    denoise = guidance.Denoiser(model, ms, cond={"weight": 0.5})
    x = torch.full((2, 4, 2, 2), 3.0)
    sigma = ms.sigmas[600]
    out = denoise(x, sigma)
    x_in, timestep, _ = model.calls[0]
    torch.testing.assert_close(x_in, x / math.sqrt(1 + float(sigma) ** 2))
    torch.testing.assert_close(timestep, torch.full((2,), 600.0), atol=2e-3, rtol=0)
    torch.testing.assert_close(out, x - x_in * 0.5 * sigma)


def test_denoiser_applies_cfg_and_skips_the_uncond_pass_at_scale_one():
    ms = msm.discrete("eps")
    x, sigma = torch.full((1, 4, 2, 2), 2.0), torch.tensor(1.5)
    model = _RecordingModel()
    guided = guidance.Denoiser(model, ms, cond={"weight": 1.0}, uncond={"weight": 0.2}, cfg_scale=4.0)(x, sigma)
    assert len(model.calls) == 2
    cond_out = guidance.Denoiser(_RecordingModel(), ms, cond={"weight": 1.0})(x, sigma)
    uncond_out = guidance.Denoiser(_RecordingModel(), ms, cond={"weight": 0.2})(x, sigma)
    torch.testing.assert_close(guided, uncond_out + (cond_out - uncond_out) * 4.0)
    single = _RecordingModel()
    plain = guidance.Denoiser(single, ms, cond={"weight": 1.0}, uncond={"weight": 0.2}, cfg_scale=1.0)(x, sigma)
    assert len(single.calls) == 1
    torch.testing.assert_close(plain, cond_out)
