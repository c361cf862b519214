"""How a model's raw output becomes a denoised estimate: sigma tables, timesteps and prediction types.

A :class:`ModelSampling` pairs a schedule (which sigmas exist, which network timestep each one is) with a
prediction type (what the network outputs). Formulas: Karras et al. 2022 ("Elucidating the design space", the
c_in/c_skip/c_out preconditioning), Salimans & Ho 2022 (v-prediction), Luo et al. 2023 (LCM boundary condition),
Esser et al. 2024 (rectified flow, shifted timesteps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import Tensor


class Prediction(StrEnum):
    """What the network predicts."""

    EPS = "eps"
    V = "v_prediction"
    LCM = "lcm"
    EDM = "edm"
    FLOW = "flow"


class DiscreteSchedule:
    """The 1000 training timesteps of SD1/SD2/SDXL: scaled-linear betas, ``sigma = sqrt((1 - ac) / ac)`` (PixArt:
    linear betas).

    ``original_steps`` keeps every (1000 / n)-th timestep only (LCM's distilled table: 50).
    """

    sigma_data = 1.0

    def __init__(self, beta_start: float = 0.00085, beta_end: float = 0.012, timesteps: int = 1000,
                 original_steps: int | None = None, beta_schedule: str = "scaled_linear") -> None:
        if beta_schedule == "linear":  # PixArt
            betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
        elif beta_schedule == "scaled_linear":
            betas = torch.linspace(beta_start**0.5, beta_end**0.5, timesteps, dtype=torch.float64) ** 2
        else:
            raise ValueError(f"unknown beta schedule {beta_schedule!r} (linear or scaled_linear)")
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        sigmas = ((1.0 - alphas_cumprod) / alphas_cumprod) ** 0.5
        table_t = torch.arange(timesteps, dtype=torch.float64)
        self.distilled = original_steps is not None
        if original_steps is not None:
            stride = timesteps // original_steps
            index = torch.arange(1, original_steps + 1) * stride - 1
            sigmas, table_t = sigmas[index], table_t[index]
        self.alphas_cumprod = alphas_cumprod.float()
        self.sigmas = sigmas.float()
        self.log_sigmas = self.sigmas.log()
        self.table_t = table_t.float()

    @property
    def sigma_min(self) -> Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma: Tensor) -> Tensor:
        """The network timestep for ``sigma``: log-sigma interpolated in the table (fractional index); a distilled
        table (LCM) gives the timestep of the nearest entry in log-sigma, one it was trained on."""
        log_sigma = torch.as_tensor(sigma, dtype=torch.float32).log()
        if self.distilled:
            nearest = (log_sigma.unsqueeze(-1) - self.log_sigmas.to(log_sigma.device)).abs().argmin(dim=-1)
            return self.table_t.to(log_sigma.device)[nearest]
        log_sigmas = self.log_sigmas.to(log_sigma.device)
        high = torch.searchsorted(log_sigmas, log_sigma.contiguous()).clamp(1, len(log_sigmas) - 1)
        low = high - 1
        weight = ((log_sigma - log_sigmas[low]) / (log_sigmas[high] - log_sigmas[low])).clamp(0, 1)
        table_t = self.table_t.to(log_sigma.device)
        return (1 - weight) * table_t[low] + weight * table_t[high]

    def sigma(self, timestep: Tensor) -> Tensor:
        """The sigma of a (fractional) timestep, interpolating log-sigma between table entries."""
        t = torch.as_tensor(timestep, dtype=torch.float32)
        t = t.clamp(float(self.table_t[0]), float(self.table_t[-1]))
        index = torch.searchsorted(self.table_t.to(t.device), t.contiguous()).clamp(1, len(self.table_t) - 1)
        low_t, high_t = self.table_t[index - 1].to(t.device), self.table_t[index].to(t.device)
        weight = (t - low_t) / (high_t - low_t)
        log_sigmas = self.log_sigmas.to(t.device)
        return ((1 - weight) * log_sigmas[index - 1] + weight * log_sigmas[index]).exp()


class EDMSchedule:
    """A continuous EDM schedule (Playground 2.5: 0.002 .. 120, sigma_data 0.5); timestep = log(sigma) / 4."""

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 120.0, sigma_data: float = 0.5) -> None:
        self.sigma_data = sigma_data
        self.sigmas = torch.linspace(math.log(sigma_min), math.log(sigma_max), 1000).exp()

    @property
    def sigma_min(self) -> Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma: Tensor) -> Tensor:
        return 0.25 * torch.as_tensor(sigma).log()

    def sigma(self, timestep: Tensor) -> Tensor:
        return (torch.as_tensor(timestep) / 0.25).exp()


class FlowSchedule:
    """Rectified flow with a shifted time: ``sigma(t) = shift * t / (1 + (shift - 1) * t)``, t in 0..1.

    ``sigma(timestep)`` shifts ``timestep / multiplier``; the network is given ``sigma * multiplier`` (SD3: 1000),
    so ``timestep`` is not the inverse of ``sigma`` unless shift is 1 (as ComfyUI's and diffusers' SD3).
    """

    sigma_data = 1.0

    def __init__(self, shift: float = 1.0, multiplier: float = 1000.0, timesteps: int = 1000) -> None:
        self.shift = shift
        self.multiplier = multiplier
        self.sigmas = self.sigma(torch.arange(1, timesteps + 1, dtype=torch.float32) / timesteps * multiplier)

    @property
    def sigma_min(self) -> Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma: Tensor) -> Tensor:
        return torch.as_tensor(sigma) * self.multiplier

    def sigma(self, timestep: Tensor) -> Tensor:
        t = torch.as_tensor(timestep) / self.multiplier
        return self.shift * t / (1 + (self.shift - 1) * t)


Schedule = DiscreteSchedule | EDMSchedule | FlowSchedule

PERCENT_START_SIGMA = 999999999.9
"""``percent_to_sigma(0)``: above every model's sigma_max, so a range starting at 0 % covers the first step."""
LCM_SIGMA_DATA = 0.5
LCM_TIMESTEP_SCALING = 10.0


@dataclass(frozen=True)
class ModelSampling:
    """A schedule and a prediction type: everything between a sampler's ``(x, sigma)`` and the network."""

    schedule: Schedule
    prediction: Prediction

    @property
    def sigmas(self) -> Tensor:
        return self.schedule.sigmas

    @property
    def sigma_min(self) -> Tensor:
        return self.schedule.sigma_min

    @property
    def sigma_max(self) -> Tensor:
        return self.schedule.sigma_max

    def timestep(self, sigma: Tensor) -> Tensor:
        """What the network is given as its timestep for ``sigma``."""
        return self.schedule.timestep(sigma)

    def sigma(self, timestep: Tensor) -> Tensor:
        return self.schedule.sigma(timestep)

    def scale_input(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The network's input (``c_in * x``): ``x / sqrt(sigma^2 + sigma_data^2)``; flow models take x as is."""
        if self.prediction is Prediction.FLOW:
            return x
        return x / (_view(sigma, x) ** 2 + self.schedule.sigma_data**2) ** 0.5

    def denoised(self, x: Tensor, sigma: Tensor, model_output: Tensor) -> Tensor:
        """The denoised estimate from the network's output at ``(x, sigma)``."""
        s = _view(sigma, x)
        sd = self.schedule.sigma_data
        if self.prediction in (Prediction.EPS, Prediction.FLOW):
            return x - model_output * s
        if self.prediction is Prediction.V:
            return x * sd**2 / (s**2 + sd**2) - model_output * s * sd / (s**2 + sd**2) ** 0.5
        if self.prediction is Prediction.EDM:
            return x * sd**2 / (s**2 + sd**2) + model_output * s * sd / (s**2 + sd**2) ** 0.5
        return self._lcm_denoised(x, sigma, model_output)

    def _lcm_denoised(self, x: Tensor, sigma: Tensor, model_output: Tensor) -> Tensor:
        """LCM's consistency boundary condition: ``c_skip * x + c_out * x0`` on the scaled timestep."""
        x0 = x - model_output * _view(sigma, x)
        scaled_t = _view(self.timestep(torch.as_tensor(sigma)), x) * LCM_TIMESTEP_SCALING
        c_skip = LCM_SIGMA_DATA**2 / (scaled_t**2 + LCM_SIGMA_DATA**2)
        c_out = scaled_t / (scaled_t**2 + LCM_SIGMA_DATA**2) ** 0.5
        return c_out * x0 + c_skip * x

    def noise_scaling(self, sigma: Tensor, noise: Tensor, latent: Tensor, max_denoise: bool = False) -> Tensor:
        """The sampler's starting point: the latent noised to ``sigma`` (``sqrt(1 + sigma^2)`` at full denoise)."""
        s = _view(sigma, noise)
        if self.prediction is Prediction.FLOW:
            return s * noise + (1.0 - s) * latent
        scale = (1.0 + s**2) ** 0.5 if max_denoise else s
        return noise * scale + latent

    def inverse_noise_scaling(self, sigma: Tensor, latent: Tensor) -> Tensor:
        """Undo the start scaling on the sampler's result (flow: ``latent / (1 - sigma)``; others: as is)."""
        if self.prediction is Prediction.FLOW:
            return latent / (1.0 - _view(sigma, latent))
        return latent

    def percent_to_sigma(self, percent: float) -> float:
        """The sigma at ``percent`` of the way through sampling (0: the start, above sigma_max; 1: the end, 0),
        as ComfyUI's timestep ranges and ControlNet start/end percents use it."""
        if percent <= 0.0:
            return PERCENT_START_SIGMA
        if percent >= 1.0:
            return 0.0
        if isinstance(self.schedule, EDMSchedule):
            low, high = math.log(float(self.sigma_min)), math.log(float(self.sigma_max))
            return math.exp(low + (high - low) * (1.0 - percent))
        last = (len(self.sigmas) - 1) if isinstance(self.schedule, DiscreteSchedule) else self.schedule.multiplier
        return float(self.sigma(torch.tensor((1.0 - percent) * last, dtype=torch.float64)))

    def is_max_denoise(self, sigmas: Tensor) -> bool:
        """True when the sigmas start at (or above) the model's sigma_max: sampling from pure noise."""
        first, top = float(sigmas[0]), float(self.sigma_max)
        return math.isclose(first, top, rel_tol=1e-5) or first > top


def discrete(prediction: Prediction | str = Prediction.EPS) -> ModelSampling:
    """SD1/SD2/SDXL sampling (eps or v), or LCM on its 50-step distilled table."""
    kind = Prediction(prediction)
    if kind is Prediction.LCM:
        return ModelSampling(DiscreteSchedule(original_steps=50), kind)
    if kind not in (Prediction.EPS, Prediction.V):
        raise ValueError(f"discrete models predict eps, v_prediction or lcm, not {kind}")
    return ModelSampling(DiscreteSchedule(), kind)


def edm(sigma_min: float = 0.002, sigma_max: float = 120.0, sigma_data: float = 0.5) -> ModelSampling:
    """Continuous EDM sampling (Playground 2.5 defaults)."""
    return ModelSampling(EDMSchedule(sigma_min, sigma_max, sigma_data), Prediction.EDM)


def flow(shift: float = 3.0, multiplier: float = 1000.0, timesteps: int = 1000) -> ModelSampling:
    """Rectified-flow sampling (SD3: shift 3, timestep = t * 1000; AuraFlow: shift 1.73, timestep = t; Flux
    schnell: shift 1, timestep = t)."""
    return ModelSampling(FlowSchedule(shift, multiplier, timesteps), Prediction.FLOW)


FLUX_TIMESTEPS = 10000
"""Flux dev's sigma table has 10,000 entries (schedulers that index the table, e.g. simple, step through it)."""


def flux(mu: float = 1.15) -> ModelSampling:
    """Flux dev/Kontext/Fill sampling: time shifted by ``exp(mu)`` (``mu`` from the resolution with
    ModelSamplingFlux; 1.15 by default), timestep = sigma."""
    return ModelSampling(FlowSchedule(math.exp(mu), 1.0, FLUX_TIMESTEPS), Prediction.FLOW)


def _view(sigma: Tensor | float, like: Tensor) -> Tensor:
    """``sigma`` broadcastable over ``like``: a scalar, or one value per batch item."""
    s = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    return s.reshape(s.shape + (1,) * (like.ndim - s.ndim)) if s.ndim else s
