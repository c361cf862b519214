"""Each sampler against its published update rule, written out here for three steps.

The denoiser is the exact one of a Gaussian data distribution N(mu, s^2); the noise comes from a list, so every
stochastic step is reproducible. ``_toward`` is the first-order (DDIM) step: at ``target`` the point on the line
from the denoised estimate through x, ``D + (target / sigma) (x - D)``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from visionatrix.diffusion.sampling import samplers
from visionatrix.diffusion.sampling.samplers_multistep import lms_coefficient

MU, S = 0.3, 0.7
SIGMAS = torch.tensor([8.0, 3.0, 1.2, 0.4, 0.0], dtype=torch.float64)


def gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return MU + S**2 / (S**2 + sigma**2) * (x - MU)


class ListNoise:
    def __init__(self, count: int, shape: tuple[int, ...] = (3, 5)) -> None:
        generator = torch.Generator().manual_seed(42)
        self.values = [torch.randn(shape, generator=generator, dtype=torch.float64) for _ in range(count)]
        self.used = 0
        self.calls: list[tuple[float, float]] = []

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        self.calls.append((float(sigma), float(sigma_next)))
        self.used += 1
        return self.values[self.used - 1]


def _start() -> torch.Tensor:
    return torch.randn(3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 8.0


def _toward(x, denoised, sigma, target):
    return denoised + (target / sigma) * (x - denoised)


def _ancestral(sigma, sigma_next):
    up = math.sqrt(sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2)
    return math.sqrt(sigma_next**2 - up**2), up


def _run(name, noise=None, **options):
    return samplers.SAMPLERS[name](gaussian_denoiser, _start(), SIGMAS, noise_sampler=noise, **options)


def _sigmas():
    return [float(s) for s in SIGMAS]


def test_heun_averages_the_slopes_at_both_ends_and_ends_with_euler():
    x, sig = _start(), _sigmas()
    for a, b in itertools.pairwise(sig):
        slope = (x - gaussian_denoiser(x, torch.tensor(a))) / a
        guess = x + (b - a) * slope
        if b == 0:
            x = guess
            continue
        x = x + (b - a) * (slope + (guess - gaussian_denoiser(guess, torch.tensor(b))) / b) / 2
    torch.testing.assert_close(_run("heun"), x)


def test_dpm_2_takes_the_slope_at_the_geometric_midpoint():
    x, sig = _start(), _sigmas()
    for a, b in itertools.pairwise(sig):
        slope = (x - gaussian_denoiser(x, torch.tensor(a))) / a
        if b == 0:
            x = x - a * slope
            continue
        mid = math.sqrt(a * b)
        x_mid = x + (mid - a) * slope
        x = x + (b - a) * (x_mid - gaussian_denoiser(x_mid, torch.tensor(mid))) / mid
    torch.testing.assert_close(_run("dpm_2"), x)


def test_dpm_2_ancestral_steps_to_sigma_down_then_adds_sigma_up_noise():
    noise = ListNoise(3)
    out = _run("dpm_2_ancestral", noise)
    x, sig, draws = _start(), _sigmas(), iter(noise.values)
    for a, b in itertools.pairwise(sig):
        slope = (x - gaussian_denoiser(x, torch.tensor(a))) / a
        down, up = _ancestral(a, b) if b else (0.0, 0.0)
        if down == 0:
            x = x - a * slope
            continue
        mid = math.sqrt(a * down)
        x_mid = x + (mid - a) * slope
        x = x + (down - a) * (x_mid - gaussian_denoiser(x_mid, torch.tensor(mid))) / mid + up * next(draws)
    torch.testing.assert_close(out, x)
    assert noise.calls == list(zip(_sigmas()[:3], _sigmas()[1:4], strict=True))


def test_lms_weights_the_last_four_slopes_by_integrated_lagrange_polynomials():
    from scipy import integrate

    def coefficient(nodes, j, a, b):
        def basis(tau):
            return math.prod((tau - nodes[k]) / (nodes[j] - nodes[k]) for k in range(len(nodes)) if k != j)
        return integrate.quad(basis, a, b, epsrel=1e-12)[0]

    sig = _sigmas()
    for j in range(3):
        assert lms_coefficient(sig[2::-1], j, sig[2], sig[3]) == pytest.approx(coefficient(sig[2::-1], j, sig[2],
                                                                                           sig[3]), rel=1e-9)
    x, slopes = _start(), []
    for i in range(4):
        slopes.insert(0, (x - gaussian_denoiser(x, SIGMAS[i])) / sig[i])
        nodes = sig[i::-1][: len(slopes)]
        x = x + sum(coefficient(nodes, j, sig[i], sig[i + 1]) * slopes[j] for j in range(len(slopes)))
    torch.testing.assert_close(_run("lms"), x)


def test_dpmpp_2s_ancestral_evaluates_at_the_log_midpoint_of_sigma_and_sigma_down():
    noise = ListNoise(3)
    out = _run("dpmpp_2s_ancestral", noise)
    x, sig, draws = _start(), _sigmas(), iter(noise.values)
    for a, b in itertools.pairwise(sig):
        denoised = gaussian_denoiser(x, torch.tensor(a))
        if b == 0:
            x = denoised
            continue
        down, up = _ancestral(a, b)
        mid = math.sqrt(a * down)
        x_mid = _toward(x, denoised, a, mid)
        x = _toward(x, gaussian_denoiser(x_mid, torch.tensor(mid)), a, down) + up * next(draws)
    torch.testing.assert_close(out, x)


def test_dpmpp_sde_does_two_ancestral_stages_per_step_with_the_midpoint_estimate():
    noise = ListNoise(6)
    out = _run("dpmpp_sde", noise)
    x, sig, draws = _start(), _sigmas(), iter(noise.values)
    for a, b in itertools.pairwise(sig):
        denoised = gaussian_denoiser(x, torch.tensor(a))
        if b == 0:
            x = denoised
            continue
        mid = math.sqrt(a * b)
        down, up = _ancestral(a, mid)
        x_mid = _toward(x, denoised, a, down) + up * next(draws)
        down, up = _ancestral(a, b)
        x = _toward(x, gaussian_denoiser(x_mid, torch.tensor(mid)), a, down) + up * next(draws)
    torch.testing.assert_close(out, x)
    assert noise.calls[:2] == [(8.0, math.sqrt(24.0)), (8.0, 3.0)]


def test_dpmpp_2m_sde_follows_the_sde_solver_with_the_midpoint_correction():
    noise = ListNoise(3)
    out = _run("dpmpp_2m_sde", noise)
    x, sig, draws = _start(), _sigmas(), iter(noise.values)
    previous, h_last = None, None
    for a, b in itertools.pairwise(sig):
        denoised = gaussian_denoiser(x, torch.tensor(a))
        if b == 0:
            x = denoised
            continue
        h = math.log(a / b)
        keep = 1 - math.exp(-2 * h)
        x = (b / a) ** 2 * x + keep * denoised
        if previous is not None:
            x = x + keep / 2 * (h / h_last) * (denoised - previous)
        x = x + b * math.sqrt(keep) * next(draws)
        previous, h_last = denoised, h
    torch.testing.assert_close(out, x)


def test_dpmpp_3m_sde_extrapolates_the_estimate_with_a_quadratic_in_log_sigma():
    noise = ListNoise(3)
    out = _run("dpmpp_3m_sde", noise)
    x, sig, draws = _start(), _sigmas(), iter(noise.values)
    history: list[tuple[float, torch.Tensor]] = []
    for a, b in itertools.pairwise(sig):
        denoised = gaussian_denoiser(x, torch.tensor(a))
        if b == 0:
            x = denoised
            continue
        lam, h = -math.log(a), math.log(a / b)
        h2 = 2 * h
        phi_2 = (math.exp(-h2) - 1) / h2 + 1
        phi_3 = phi_2 / h2 - 0.5
        x = math.exp(-h2) * x + (1 - math.exp(-h2)) * denoised
        points = [*history, (lam, denoised)][-3:]
        if len(points) >= 2:
            degree = len(points) - 1
            lams = np.array([p[0] for p in points])
            values = torch.stack([p[1] for p in points]).reshape(len(points), -1).numpy()
            fit = np.polyfit(lams - lam, values, degree)  # highest power first
            slope = torch.from_numpy(fit[-2]).reshape(x.shape)
            curve = torch.from_numpy(fit[0]).reshape(x.shape) if degree == 2 else torch.zeros_like(x)
            x = x + phi_2 * h * slope - phi_3 * h**2 * curve
        x = x + b * math.sqrt(1 - math.exp(-2 * h)) * next(draws)
        history.append((lam, denoised))
    torch.testing.assert_close(out, x)


def test_lcm_jumps_to_the_estimate_and_renoises_it_to_the_next_sigma():
    noise = ListNoise(3)
    out = _run("lcm", noise)
    x, sig, draws = _start(), _sigmas(), iter(noise.values)
    for a, b in itertools.pairwise(sig):
        x = gaussian_denoiser(x, torch.tensor(a))
        if b:
            x = x + b * next(draws)
    torch.testing.assert_close(out, x)
