"""One denoising evaluation of a model's network (a diffusers UNet or a transformer) over several conditioning sets,
batched.

For each conditioning set (positive, negative, ...) the estimate is the weighted mean of the denoised outputs of
its entries active at this sigma, each over its area, weighted by strength, mask and edge feathering (ComfyUI's
``calc_cond_batch`` behaviour). Entries with the same area, token count, ControlNet chain and extra channels are run
in one network call (the positive and negative prompts of a plain graph are one batch of two), so a step costs one
UNet call like a direct diffusers loop. The network call itself is the family's: a UNet's here, the transformers'
in :mod:`visionatrix.diffusion.dit.calls`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from visionatrix.diffusion.checkpoints.detect import Family
from visionatrix.diffusion.conds import PreparedCond
from visionatrix.diffusion.dit import calls
from visionatrix.diffusion.model import DiffusionModel
from visionatrix.errors import InvalidInput

TINY = 1e-37
UNET_FAMILIES = (Family.SD1, Family.SD2, Family.SDXL, Family.SDXL_REFINER)


class UnetEvaluator:
    """``evaluate(x, sigma, sets) -> one denoised estimate per set`` for ``model``'s network."""

    def __init__(self, model: DiffusionModel) -> None:
        self.model = model
        self.ms = model.model_sampling
        parameter = next(model.unet.parameters())
        self.dtype, self.device = parameter.dtype, parameter.device
        self.skip_layers: Sequence[int] | None = None
        """Joint blocks the next calls leave out (SD3's Skip Layer Guidance sets it for its extra pass)."""

    def evaluate(self, x: Tensor, sigma: Tensor, sets: Sequence[Sequence[PreparedCond]]) -> list[Tensor]:
        sigma_value = float(sigma.reshape(-1)[0])
        groups: dict[tuple[Any, ...], list[tuple[int, PreparedCond]]] = {}
        for index, conds in enumerate(sets):
            for cond in conds:
                if cond.active(sigma_value):
                    key = (cond.area, cond.context.shape[1], id(cond.control), _shapes(cond.added),
                           cond.concat is None, tuple(id(ref) for ref in cond.refs))
                    groups.setdefault(key, []).append((index, cond))
        sums = [torch.zeros_like(x) for _ in sets]
        counts = [torch.full_like(x[:, :1], TINY) for _ in sets]
        for members in groups.values():
            for (index, cond), denoised in zip(members, self._run(x, sigma, [c for _, c in members]), strict=True):
                weight = torch.full_like(denoised[:, :1], cond.strength)
                if cond.weight is not None:
                    weight = weight * cond.weight.to(weight.dtype)
                if cond.area is None:
                    sums[index] += denoised * weight
                    counts[index] += weight
                else:
                    h, w, y, xx = cond.area
                    sums[index][..., y:y + h, xx:xx + w] += denoised * weight
                    counts[index][..., y:y + h, xx:xx + w] += weight
        return [total / count for total, count in zip(sums, counts, strict=True)]

    def _run(self, x: Tensor, sigma: Tensor, conds: list[PreparedCond]) -> list[Tensor]:
        """Denoised estimates of ``conds`` (same area and shapes) from one network call."""
        first = conds[0]
        batch = x.shape[0]
        n = len(conds)
        x_area = first.crop(x)
        sigma_b = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(batch)
        x_in = self.ms.scale_input(x_area, sigma_b)
        if first.concat is not None:
            x_in = torch.cat([x_in, first.crop(first.concat).to(x_in)], dim=1)
        x_in = x_in.repeat(n, 1, 1, 1)
        timestep = self.ms.timestep(sigma_b).repeat(n)
        context = torch.cat([c.context.expand(batch, -1, -1) for c in conds])
        added = None
        if first.added is not None:
            added = {key: torch.cat([c.added[key].expand(batch, *c.added[key].shape[1:])  # type: ignore[index]
                                     for c in conds]) for key in first.added}
        down = mid = None
        if first.control is not None:
            if self.model.family not in UNET_FAMILIES:
                raise InvalidInput("positive", f"ControlNets condition SD1/SD2/SDXL UNets; this is a "
                                               f"{self.model.family} model (its ControlNets are not supported yet)")
            down, mid = first.control.residuals(x_in, timestep, sigma_b.repeat(n), context, added, self.ms,
                                                cond_count=n)
        out = self.network(x_in, timestep, context, added, down, mid, first.refs)
        return [self.ms.denoised(x_area, sigma_b, part) for part in out.chunk(n)]

    def network(self, x_in: Tensor, timestep: Tensor, context: Tensor, added: dict[str, Tensor] | None,
                down: Sequence[Tensor] | None, mid: Tensor | None, refs: Sequence[Tensor]) -> Tensor:
        """The family's network call (float32 output in ComfyUI's convention)."""
        family = self.model.family
        if family is Family.FLUX:
            return calls.flux_call(self.model.unet, x_in, timestep, context, added, refs)
        if family is Family.SD3:
            return calls.sd3_call(self.model.unet, x_in, timestep, context, added, self.skip_layers)
        if family in calls.OTHER_FAMILIES:
            return calls.other_call(family, self.model.unet, x_in, timestep, context, added)
        return self.call(x_in, timestep, context, added, down, mid)

    def call(self, x_in: Tensor, timestep: Tensor, context: Tensor, added: dict[str, Tensor] | None,
             down: Sequence[Tensor] | None = None, mid: Tensor | None = None) -> Tensor:
        """The raw network output (float32) for network inputs already scaled."""
        cast = {"device": self.device, "dtype": self.dtype}
        kwargs: dict[str, Any] = {"encoder_hidden_states": context.to(**cast)}
        if added is not None:
            kwargs["added_cond_kwargs"] = {key: value.to(**cast) for key, value in added.items()}
        if down is not None:
            kwargs["down_block_additional_residuals"] = tuple(d.to(**cast) for d in down)
        if mid is not None:
            kwargs["mid_block_additional_residual"] = mid.to(**cast)
        out = self.model.unet(x_in.to(**cast), timestep.to(self.device, torch.float32), return_dict=False, **kwargs)
        return out[0].float()


def _shapes(added: dict[str, Tensor] | None) -> tuple[Any, ...] | None:
    return None if added is None else tuple((key, tuple(value.shape)) for key, value in added.items())
