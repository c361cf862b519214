"""Classifier-free guidance and the denoiser a sampler walks with: ``denoise(x, sigma) -> denoised``.

Ho & Salimans 2022: ``uncond + (cond - uncond) * scale`` on the denoised estimates; at scale 1 the result is
``cond`` and the unconditional pass is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from visionatrix.diffusion.sampling.model_sampling import ModelSampling

DenoiseFn = Callable[[Tensor, Tensor], Tensor]
"""``denoise(x, sigma) -> denoised``; ``sigma`` is a 0-d tensor or one value per batch item."""

StepCallback = Callable[[int, int, Tensor, Tensor], None]
"""``callback(step, total, x, denoised)`` after each step: progress, previews, the interrupt point."""

ModelFn = Callable[..., Tensor]
"""The network: ``model(x_in, timestep, **cond) -> raw output``."""


def cfg(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance of two denoised estimates."""
    return uncond + (cond - uncond) * scale


class Denoiser:
    """A model callable plus its sampling type as ``denoise(x, sigma)``, with CFG when ``uncond`` is given.

    Per call: the input scaled by ``c_in``, the sigma converted to the network's timestep, the raw output turned
    into a denoised estimate; the unconditional pass runs only when ``cfg_scale != 1``.
    """

    def __init__(self, model: ModelFn, model_sampling: ModelSampling, cond: Mapping[str, Any] | None = None,
                 uncond: Mapping[str, Any] | None = None, cfg_scale: float = 1.0) -> None:
        self.model = model
        self.model_sampling = model_sampling
        self.cond = dict(cond or {})
        self.uncond = None if uncond is None else dict(uncond)
        self.cfg_scale = cfg_scale

    def predict(self, x: Tensor, sigma: Tensor, cond: Mapping[str, Any]) -> Tensor:
        """One network pass under ``cond``, converted to a denoised estimate."""
        ms = self.model_sampling
        sigma_b = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        x_in = ms.scale_input(x, sigma_b)
        out = self.model(x_in, ms.timestep(sigma_b), **cond)
        return ms.denoised(x, sigma_b, out)

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        denoised = self.predict(x, sigma, self.cond)
        if self.uncond is None or self.cfg_scale == 1.0:
            return denoised
        return cfg(denoised, self.predict(x, sigma, self.uncond), self.cfg_scale)
