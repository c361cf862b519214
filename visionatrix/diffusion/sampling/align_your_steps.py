"""Align Your Steps (Sabour, Fidler & Kreis, NVIDIA 2024): optimised 10-step noise levels and their interpolation.

NVIDIA published, for SD 1.5, SDXL and Stable Video Diffusion, a 10-step schedule found by minimising the KL
divergence between the true and the discretised reverse SDE (timesteps for SD 1.5 / SDXL, noise levels rounded to
three decimals for all three), and recommended log-linear interpolation of the levels for other step counts. As
ComfyUI's ``AlignYourStepsScheduler``, the SD1 and SDXL levels here are the SD sigma table at the published timesteps
(SD1: 999, 850, 736, 645, 545, 455, 343, 233, 124, 24, 0; SDXL: 999, 845, 730, 587, 443, 310, 193, 116, 53, 13, 0), so
they differ from the rounded published sigmas by up to 0.0035; SVD's are the published levels. The behaviour:

- ``steps + 1`` levels: the table itself for 10 steps, else the log-sigmas linearly interpolated from the 11 points
  (evenly spaced on 0..1) to ``steps + 1`` evenly spaced points;
- ``denoise < 1`` keeps the last ``round(steps * denoise) + 1`` levels (Python's round: halves to even), ``denoise
  <= 0`` gives no sigmas;
- the last level kept is replaced by 0, so sampling ends on the clean image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

NOISE_LEVELS: dict[str, tuple[float, ...]] = {
    "SD1": (14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092, 0.9642583904,
            0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582),
    "SDXL": (14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141, 0.5550693289,
             0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582),
    "SVD": (700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002),
}
"""NVIDIA's 10-step AYS noise levels (highest first) per model type."""
MODEL_TYPES = list(NOISE_LEVELS)


def loglinear_interp(levels: Sequence[float], count: int) -> np.ndarray:
    """``count`` levels whose logs are linearly interpolated between the logs of ``levels`` (same ends)."""
    known = np.linspace(0.0, 1.0, len(levels))
    wanted = np.linspace(0.0, 1.0, count)
    return np.exp(np.interp(wanted, known, np.log(np.asarray(levels, dtype=np.float64))))


def ays_sigmas(model_type: str, steps: int, denoise: float = 1.0) -> Tensor:
    """The AYS sigmas for ``steps`` (float32 on the CPU, ending in 0); empty for ``denoise <= 0``."""
    if model_type not in NOISE_LEVELS:
        raise ValueError(f"unknown AYS model type {model_type!r}; known: {', '.join(MODEL_TYPES)}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    kept = steps
    if denoise < 1.0:
        if denoise <= 0.0:
            return torch.zeros(0)
        kept = round(steps * denoise)
    levels = NOISE_LEVELS[model_type]
    values = np.asarray(levels, dtype=np.float64) if steps + 1 == len(levels) else loglinear_interp(levels, steps + 1)
    values = values[-(kept + 1):].copy()
    values[-1] = 0.0
    return torch.tensor(values, dtype=torch.float32)
