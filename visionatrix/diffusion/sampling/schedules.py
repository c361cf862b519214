"""Sigma schedules: which noise levels a sampler walks (steps + 1 values ending in 0), as ComfyUI picks them.

Formulas: Karras et al. 2022 (karras, rho 7), AYS/Sabour et al. 2024 (kl_optimal), the Mochi schedule
(linear_quadratic: linear to a threshold, then a quadratic with matching value and slope that reaches 1).
The table-indexing schedules (simple, ddim_uniform, beta) read the model's own sigma table.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from visionatrix.diffusion.sampling.model_sampling import ModelSampling

SCHEDULES = ("normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform", "beta",
             "linear_quadratic", "kl_optimal")
DISCARD_PENULTIMATE = frozenset({"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"})
KARRAS_RHO = 7.0


def sigmas(schedule_name: str, model_sampling: ModelSampling, steps: int) -> Tensor:
    """The sigmas of ``schedule_name`` for ``steps`` steps, float32, last 0."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    sigma_min, sigma_max = float(model_sampling.sigma_min), float(model_sampling.sigma_max)
    if schedule_name == "normal":
        return _timestep_uniform(model_sampling, steps, sgm=False)
    if schedule_name == "sgm_uniform":
        return _timestep_uniform(model_sampling, steps, sgm=True)
    if schedule_name == "karras":
        ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
        lo, hi = sigma_min ** (1 / KARRAS_RHO), sigma_max ** (1 / KARRAS_RHO)
        return _append_zero((hi + ramp * (lo - hi)) ** KARRAS_RHO)
    if schedule_name == "exponential":
        return _append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), steps).exp())
    if schedule_name == "simple":
        return _simple(model_sampling.sigmas, steps)
    if schedule_name == "ddim_uniform":
        return _ddim_uniform(model_sampling.sigmas, steps)
    if schedule_name == "beta":
        return _beta(model_sampling.sigmas, steps)
    if schedule_name == "linear_quadratic":
        return _linear_quadratic(steps) * sigma_max
    if schedule_name == "kl_optimal":
        frac = torch.arange(steps, dtype=torch.float64) / max(steps - 1, 1)
        angles = frac * math.atan(sigma_min) + (1 - frac) * math.atan(sigma_max)
        return _append_zero(angles.tan())
    raise ValueError(f"unknown schedule {schedule_name!r}; known: {', '.join(SCHEDULES)}")


def ksampler_sigmas(schedule_name: str, model_sampling: ModelSampling, steps: int, sampler_name: str = "euler",
                    denoise: float = 1.0) -> Tensor:
    """KSampler's sigmas: ``denoise < 1`` computes ``int(steps / denoise)`` and keeps the last ``steps + 1``;
    samplers in :data:`DISCARD_PENULTIMATE` get one step more and drop the penultimate sigma."""
    if denoise <= 0:
        return torch.zeros(0)
    total = steps if denoise > 0.9999 else int(steps / denoise)
    discard = sampler_name in DISCARD_PENULTIMATE
    full = sigmas(schedule_name, model_sampling, total + 1 if discard else total)
    if discard:
        full = torch.cat([full[:-2], full[-1:]])
    return full[-(steps + 1):]


def for_denoise(schedule_name: str, model_sampling: ModelSampling, steps: int, denoise: float) -> Tensor:
    """The last ``steps + 1`` of ``int(steps / denoise)`` sigmas (BasicScheduler's denoise)."""
    return ksampler_sigmas(schedule_name, model_sampling, steps, "euler", denoise)


def slice_steps(sigmas_: Tensor, start_step: int = 0, last_step: int | None = None,
                leftover_noise: bool = False) -> Tensor:
    """KSamplerAdvanced's window: sigmas from ``start_step`` to ``last_step``; without ``leftover_noise`` a cut
    end is denoised fully (last sigma 0). Empty when ``start_step`` leaves nothing to sample."""
    out = sigmas_.clone()
    if last_step is not None and last_step < len(out) - 1:
        out = out[: last_step + 1]
        if not leftover_noise:
            out[-1] = 0.0
    return out[start_step:] if start_step < len(out) - 1 else out[:0]


def split_sigmas(sigmas_: Tensor, step: int) -> tuple[Tensor, Tensor]:
    """High and low parts sharing the sigma at ``step`` (SplitSigmas)."""
    return sigmas_[: step + 1], sigmas_[step:]


def flip_sigmas(sigmas_: Tensor) -> Tensor:
    """Reversed sigmas (for unsampling); a leading 0 becomes 1e-4 so the first step has a noise level."""
    out = sigmas_.flip(0).clone()
    if len(out) and out[0] == 0:
        out[0] = 1e-4
    return out


def _append_zero(values: Tensor) -> Tensor:
    return torch.cat([values.float(), torch.zeros(1)])


def _timestep_uniform(model_sampling: ModelSampling, steps: int, sgm: bool) -> Tensor:
    """Timesteps evenly spaced from sigma_max's to sigma_min's (sgm: steps + 1 points, the last dropped)."""
    start = float(model_sampling.timestep(model_sampling.sigma_max))
    end = float(model_sampling.timestep(model_sampling.sigma_min))

    def points(count: int) -> Tensor:
        return torch.linspace(start, end, count + 1)[:-1] if sgm else torch.linspace(start, end, count)

    values = model_sampling.sigma(points(steps)).float()
    if math.isclose(float(values[-1]), 0.0, abs_tol=1e-5):
        return model_sampling.sigma(points(steps + 1)).float()
    return _append_zero(values)


def _simple(table: Tensor, steps: int) -> Tensor:
    """Every (len / steps)-th sigma of the table, from the top."""
    stride = len(table) / steps
    return _append_zero(torch.stack([table[-(1 + int(i * stride))] for i in range(steps)]))


def _ddim_uniform(table: Tensor, steps: int) -> Tensor:
    """Table entries 1, 1 + k, 1 + 2k, ... (k = len // steps), reversed, then 0 (diffusers' "leading" + 1).

    When ``len`` is not a multiple of ``steps`` this yields more than ``steps`` values, as ComfyUI's does."""
    stride = max(len(table) // steps, 1)
    picked = table[1::stride].flip(0)
    return _append_zero(picked)


def _beta(table: Tensor, steps: int, alpha: float = 0.6, beta: float = 0.6) -> Tensor:
    """Table indices at the Beta(alpha, beta) quantiles of 1 - i/steps, rounded, repeats dropped, then 0."""
    import numpy as np
    from scipy import stats

    last = len(table) - 1
    quantiles = 1.0 - np.linspace(0.0, 1.0, steps, endpoint=False)
    indices = np.rint(stats.beta.ppf(quantiles, alpha, beta) * last).astype(int)
    kept = [int(i) for n, i in enumerate(indices) if n == 0 or i != indices[n - 1]]
    return _append_zero(table[kept])


def _linear_quadratic(steps: int, threshold_noise: float = 0.025, linear_steps: int | None = None) -> Tensor:
    """Time u(i) linear (slope threshold / L) for i < L, then ``u = thr + slope (i - L) + a (i - L)^2`` reaching 1
    at i = steps; sigma = 1 - u (scaled by sigma_max by the caller)."""
    if steps == 1:
        return torch.tensor([1.0, 0.0])
    lin = steps // 2 if linear_steps is None else linear_steps
    quad = steps - lin
    slope = threshold_noise / lin
    curve = (1.0 - threshold_noise - slope * quad) / quad**2
    times = [i * slope for i in range(lin)]
    times += [threshold_noise + slope * (i - lin) + curve * (i - lin) ** 2 for i in range(lin, steps)]
    return 1.0 - torch.tensor([*times, 1.0], dtype=torch.float32)
