"""GUIDER: how the conditioning sets of a graph combine into one denoised estimate per step.

``CFGGuider`` (positive, negative, cfg): ``negative + (positive - negative) * cfg``; at cfg 1 the negative is not
evaluated (ComfyUI's optimisation). ``BasicGuider``: the conditioning alone. ``DualCFGGuider`` (cond1, cond2,
negative, cfg_conds, cfg_cond2_negative): ``negative + (cond2 - negative) * cfg_cond2_negative + (cond1 - cond2) *
cfg_conds``. KSampler uses a CFGGuider.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from visionatrix.diffusion.model import DiffusionModel


@dataclass(frozen=True)
class Guider:
    model: DiffusionModel
    conds: Mapping[str, Any]
    """``positive``/``negative`` (CFG), ``positive`` (basic), ``cond1``/``cond2``/``negative`` (dual)"""
    kind: str = "cfg"
    cfg: float = 1.0
    cfg2: float = 1.0
    options: Mapping[str, Any] = field(default_factory=dict)

    def needed(self) -> list[str]:
        """The conditioning sets evaluated at each step."""
        if self.kind == "basic":
            return ["positive"]
        if self.kind == "dual":
            return ["cond1", "cond2", "negative"]
        if math.isclose(self.cfg, 1.0):
            return ["positive"]
        return ["positive", "negative"]

    def combine(self, out: Mapping[str, Tensor]) -> Tensor:
        if self.kind == "basic" or (self.kind == "cfg" and "negative" not in out):
            return out["positive"]
        if self.kind == "dual":
            negative, cond1, cond2 = out["negative"], out["cond1"], out["cond2"]
            return negative + (cond2 - negative) * self.cfg2 + (cond1 - cond2) * self.cfg
        return out["negative"] + (out["positive"] - out["negative"]) * self.cfg


def cfg_guider(model: DiffusionModel, positive: Any, negative: Any, cfg: float) -> Guider:
    return Guider(model, {"positive": positive, "negative": negative}, "cfg", float(cfg))
