"""Multistep samplers: they reuse the denoised estimates of earlier steps instead of extra model calls.

In lambda = -log(sigma) with data prediction (Lu et al. 2022, DPM-Solver++ 2M and its SDE variants; Zhao et al.
2023, UniPC) and linear multistep in sigma (lms, Adams-Bashforth on the integrated Lagrange basis). A step that
ends at sigma 0 returns the denoised estimate.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from visionatrix.diffusion.sampling.guidance import DenoiseFn, StepCallback
from visionatrix.diffusion.sampling.noise import NoiseSampler


def _report(callback: StepCallback | None, step: int, total: int, x: Tensor, denoised: Tensor) -> None:
    if callback is not None:
        callback(step, total, x, denoised)


def lms_coefficient(nodes: list[float], j: int, start: float, end: float) -> float:
    """The integral from ``start`` to ``end`` of the Lagrange basis polynomial of ``nodes[j]`` over ``nodes``."""
    from numpy.polynomial import Polynomial

    others = [n for k, n in enumerate(nodes) if k != j]
    basis = Polynomial.fromroots(others) / math.prod(nodes[j] - n for n in others) if others else Polynomial([1.0])
    antiderivative = basis.integ()
    return float(antiderivative(end) - antiderivative(start))


def lms(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler | None = None,
        callback: StepCallback | None = None, order: int = 4, **options: Any) -> Tensor:
    """Linear multistep: the slope interpolated through the last ``order`` sigmas, integrated over the step."""
    total = len(sigmas) - 1
    values = [float(s) for s in sigmas]
    slopes: list[Tensor] = []
    for i in range(total):
        denoised = denoise(x, sigmas[i])
        slopes = [(x - denoised) / sigmas[i], *slopes][:order]
        nodes = values[i - len(slopes) + 1: i + 1][::-1]
        for j, slope in enumerate(slopes):
            x = x + lms_coefficient(nodes, j, values[i], values[i + 1]) * slope
        _report(callback, i, total, x, denoised)
    return x


def dpmpp_2m(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler | None = None,
             callback: StepCallback | None = None, **options: Any) -> Tensor:
    """DPM-Solver++(2M): first order on the first step, then D extrapolated from the previous estimate."""
    total = len(sigmas) - 1
    previous: Tensor | None = None
    h_last = 0.0
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = float(sigma.log() - sigma_next.log())
            estimate = denoised
            if previous is not None:
                half_inv_r = h / (2 * h_last)
                estimate = (1 + half_inv_r) * denoised - half_inv_r * previous
            x = (sigma_next / sigma) * x - math.expm1(-h) * estimate
            h_last = h
        previous = denoised
        _report(callback, i, total, x, denoised)
    return x


def dpmpp_2m_sde(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler,
                 callback: StepCallback | None = None, eta: float = 1.0, s_noise: float = 1.0,
                 **options: Any) -> Tensor:
    """SDE-DPM-Solver++(2M), midpoint correction; noise ``sigma_next * sqrt(1 - exp(-2 eta h))`` per step."""
    total = len(sigmas) - 1
    previous: Tensor | None = None
    h_last = 0.0
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = float(sigma.log() - sigma_next.log())
            decay = -math.expm1(-h - eta * h)
            x = (sigma_next / sigma) * math.exp(-eta * h) * x + decay * denoised
            if previous is not None:
                x = x + 0.5 * decay * (h / h_last) * (denoised - previous)
            if eta:
                spread = math.sqrt(-math.expm1(-2 * eta * h))
                x = x + noise_sampler(sigma, sigma_next) * sigma_next * spread * s_noise
            h_last = h
        previous = denoised
        _report(callback, i, total, x, denoised)
    return x


def dpmpp_3m_sde(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler,
                 callback: StepCallback | None = None, eta: float = 1.0, s_noise: float = 1.0,
                 **options: Any) -> Tensor:
    """SDE-DPM-Solver++(3M): first and second divided differences of the last three estimates with the phi_2,
    phi_3 weights of the exponential integrator over ``h (1 + eta)``."""
    total = len(sigmas) - 1
    history: list[tuple[Tensor, float]] = []  # (denoised, h of the step that followed it), newest first
    for i in range(total):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = float(sigma.log() - sigma_next.log())
            h_eta = h * (eta + 1)
            x = math.exp(-h_eta) * x - math.expm1(-h_eta) * denoised
            x = x + _third_order_terms(denoised, history, h, h_eta)
            if eta:
                spread = math.sqrt(-math.expm1(-2 * eta * h))
                x = x + noise_sampler(sigma, sigma_next) * sigma_next * spread * s_noise
            history = [(denoised, h), *history][:2]
        _report(callback, i, total, x, denoised)
    return x


def _third_order_terms(denoised: Tensor, history: list[tuple[Tensor, float]], h: float, h_eta: float) -> Tensor:
    phi_2 = math.expm1(-h_eta) / h_eta + 1
    if not history:
        return torch.zeros_like(denoised)
    d_1, h_1 = history[0]
    first = (denoised - d_1) / (h_1 / h)
    if len(history) == 1:
        return phi_2 * first
    d_2, h_2 = history[1]
    r_0, r_1 = h_1 / h, h_2 / h
    first_back = (d_1 - d_2) / r_1
    second = (first - first_back) / (r_0 + r_1)
    slope = first + second * r_0
    phi_3 = phi_2 / h_eta - 0.5
    return phi_2 * slope - phi_3 * second


def uni_pc(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler | None = None,
           callback: StepCallback | None = None, order: int = 3, variant: str = "bh1", **options: Any) -> Tensor:
    """UniPC multistep (predictor UniP plus corrector UniC, data prediction, lambda = -log sigma).

    Warm-up raises the order one step at a time; the last steps lower it (``min(order, steps left)``); the
    corrector refines each predicted x with the model call the next step makes anyway (not after the last).
    ``variant`` "bh1" uses B(h) = h, "bh2" B(h) = e^h - 1 (Zhao et al. 2023).
    """
    total = len(sigmas) - 1
    lambdas = [-math.log(float(s)) if s > 0 else math.inf for s in sigmas]
    outputs: list[Tensor] = []  # denoised estimates, oldest first
    last_x, last_order = x, 1
    for i in range(total):
        denoised = denoise(x, sigmas[i])
        if outputs and lambdas[i] != lambdas[i - 1]:
            x = _unipc_correct(last_x, x, denoised, outputs, lambdas, i, last_order, variant)
        outputs = [*outputs, denoised][-order:]
        step_order = min(order, total - i, len(outputs))
        last_x, last_order = x, step_order
        x = _unipc_predict(x, outputs, lambdas, sigmas, i, step_order, variant)
        _report(callback, i, total, x, denoised)
    return x


def uni_pc_bh2(denoise: DenoiseFn, x: Tensor, sigmas: Tensor, *, noise_sampler: NoiseSampler | None = None,
               callback: StepCallback | None = None, order: int = 3, **options: Any) -> Tensor:
    """UniPC with B(h) = e^h - 1."""
    return uni_pc(denoise, x, sigmas, noise_sampler=noise_sampler, callback=callback, order=order, variant="bh2")


def _unipc_system(lambdas: list[float], i: int, order: int, variant: str) -> tuple[Tensor, Tensor, float, float]:
    """For the step i -> i + 1: ratios r_k of the earlier lambdas (last one 1), the right-hand side b_k of
    UniPC's linear system, phi_1 (e^-h - 1) and B(h)."""
    h = lambdas[i + 1] - lambdas[i]
    hh = -h
    phi_1 = math.expm1(hh)
    b_h = hh if variant == "bh1" else phi_1
    ratios = [(lambdas[i - k] - lambdas[i]) / h for k in range(1, order)] + [1.0]
    rhs, phi_k, factorial = [], phi_1 / hh - 1, 1
    for k in range(1, order + 1):
        rhs.append(phi_k * factorial / b_h)
        factorial *= k + 1
        phi_k = phi_k / hh - 1 / factorial
    r = torch.tensor(ratios, dtype=torch.float64)
    matrix = torch.stack([r**p for p in range(order)])
    return matrix, torch.tensor(rhs, dtype=torch.float64), phi_1, b_h


def _differences(outputs: list[Tensor], lambdas: list[float], i: int, order: int) -> list[Tensor]:
    """(D_{i-k} - D_i) / r_k for k = 1 .. order - 1; ``outputs[-1]`` is D_i."""
    h = lambdas[i + 1] - lambdas[i]
    return [(outputs[-1 - k] - outputs[-1]) / ((lambdas[i - k] - lambdas[i]) / h) for k in range(1, order)]


def _unipc_predict(x: Tensor, outputs: list[Tensor], lambdas: list[float], sigmas: Tensor, i: int, order: int,
                   variant: str) -> Tensor:
    if sigmas[i + 1] == 0:
        return outputs[-1]
    if lambdas[i + 1] == lambdas[i]:
        return x
    matrix, rhs, phi_1, b_h = _unipc_system(lambdas, i, order, variant)
    x_next = (sigmas[i + 1] / sigmas[i]) * x - phi_1 * outputs[-1]
    diffs = _differences(outputs, lambdas, i, order)
    if not diffs:
        return x_next
    rhos = [0.5] if order == 2 else torch.linalg.solve(matrix[:-1, :-1], rhs[:-1]).tolist()
    return x_next - b_h * sum(rho * d for rho, d in zip(rhos, diffs, strict=True))


def _unipc_correct(x_prev: Tensor, x_pred: Tensor, denoised: Tensor, outputs: list[Tensor], lambdas: list[float],
                   i: int, order: int, variant: str) -> Tensor:
    """UniC: redo step i-1 -> i with the estimate at the predicted point as one more interpolation node."""
    step = i - 1
    matrix, rhs, phi_1, b_h = _unipc_system(lambdas, step, order, variant)
    sigma_ratio = math.exp(lambdas[step] - lambdas[i])
    x_base = sigma_ratio * x_prev - phi_1 * outputs[-1]
    rhos = [0.5] if order == 1 else torch.linalg.solve(matrix, rhs).tolist()
    diffs = _differences(outputs, lambdas, step, order)
    correction = sum((rho * d for rho, d in zip(rhos[:-1], diffs, strict=True)), torch.zeros_like(x_prev))
    return x_base - b_h * (correction + rhos[-1] * (denoised - outputs[-1]))
