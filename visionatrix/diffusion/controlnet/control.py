"""CONTROL_NET and what ``ControlNetApply*`` put under a conditioning's ``control`` key.

:class:`ControlNet` is a loaded network (held by the model manager, shared, never changed). :class:`AppliedControl`
is one application of it: the hint image, strength, the part of sampling it acts on (start/end percent) and the
control applied before it on the same conditioning (``previous``), so chains add up as in ComfyUI: every link
active at a sigma contributes ``strength x`` its residuals, oldest first.

The sampler's UNet call asks :meth:`AppliedControl.residuals` with exactly what it gives the UNet (the scaled input
``c_in * x``, the network timestep, the text context and SDXL's added conditioning) and passes the result as
``down_block_additional_residuals`` / ``mid_block_additional_residual``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from visionatrix.diffusion.checkpoints.detect import Family
from visionatrix.errors import InvalidInput

if TYPE_CHECKING:
    from collections.abc import Mapping

    from torch import Tensor
    from torch.nn import Module

    from visionatrix.diffusion.sampling.model_sampling import ModelSampling

LATENT_SCALE = 8
"""Pixels per latent cell: the hint is brought to the latent's size times this (SD1/SD2/SDXL VAEs)."""
HINT_RESIZE = "nearest-exact"
"""ComfyUI resizes a hint of another size with nearest-exact after a centre crop to the latent's aspect ratio."""
FAMILY_NAMES = {Family.SD1: "SD1", Family.SD2: "SD2", Family.SDXL: "SDXL", Family.SDXL_REFINER: "SDXL refiner"}
CONTEXT_WIDTHS = {768: "SD1", 1024: "SD2", 2048: "SDXL", 1280: "SDXL refiner"}
"""The text-context widths of the real families, to name a model's family in an error."""


@dataclass(frozen=True, eq=False)
class ControlNet:
    """CONTROL_NET: a diffusers ``ControlNetModel`` (held by the model manager) and its family."""

    module: Module
    family: Family
    name: str = ""

    @property
    def context_dim(self) -> int:
        return int(self.module.config.cross_attention_dim)

    @property
    def takes_added_cond(self) -> bool:
        """Whether it embeds SDXL's pooled text and size/crop numbers (``add_embedding``)."""
        return self.module.config.addition_embed_type == "text_time"

    @property
    def in_channels(self) -> int:
        return int(self.module.config.in_channels)

    @property
    def conditioning_channels(self) -> int:
        return int(self.module.config.conditioning_channels)

    @property
    def label(self) -> str:
        return f"{self.name!r}" if self.name else "the ControlNet"


@dataclass(frozen=True, eq=False)
class AppliedControl:
    """One application of a :class:`ControlNet` (hashable by identity, as ComfyUI shares one across conds)."""

    net: ControlNet
    hint: Tensor
    """IMAGE ``[B, H, W, C]`` float 0..1 (the ControlNet takes it in 0..1)."""
    strength: float = 1.0
    start_percent: float = 0.0
    end_percent: float = 1.0
    previous: AppliedControl | None = None
    _hints: dict[tuple[Any, ...], Tensor] = field(default_factory=dict, repr=False)

    def chain(self) -> list[AppliedControl]:
        """This link and every previous one, oldest first."""
        links: list[AppliedControl] = []
        link: AppliedControl | None = self
        while link is not None:
            links.append(link)
            link = link.previous
        return links[::-1]

    def sigma_range(self, model_sampling: ModelSampling) -> tuple[float, float]:
        """``(start sigma, end sigma)``: the link acts while ``end <= sigma <= start``."""
        return model_sampling.percent_to_sigma(self.start_percent), model_sampling.percent_to_sigma(self.end_percent)

    def active(self, sigma: Tensor | float, model_sampling: ModelSampling) -> bool:
        """Whether this link (alone, not its chain) acts at ``sigma`` (a batch's first sigma, as ComfyUI)."""
        value = float(torch.as_tensor(sigma).flatten()[0])
        start, end = self.sigma_range(model_sampling)
        return end <= value <= start

    def residuals(self, x_in: Tensor, timestep: Tensor, sigma: Tensor | float, context: Tensor,
                  added_cond: Mapping[str, Tensor] | None, model_sampling: ModelSampling, *,
                  cond_count: int = 1) -> tuple[list[Tensor] | None, Tensor | None]:
        """The summed down-block residuals and mid-block residual of every link of the chain active at ``sigma``;
        ``(None, None)`` when none is. ``x_in`` is the UNet's (scaled) input, ``timestep`` its timestep, ``context``
        its ``encoder_hidden_states`` and ``added_cond`` SDXL's ``{"text_embeds", "time_ids"}`` (None otherwise).
        ``cond_count``: how many conditionings are batched in ``x_in`` (each a latent batch; the hint's images are
        dealt per latent batch, as ComfyUI). Results come in ``x_in``'s dtype and device."""
        down: list[Tensor] | None = None
        mid: Tensor | None = None
        for link in self.chain():
            if not link.active(sigma, model_sampling):
                continue
            own_down, own_mid = link.own_residuals(x_in, timestep, context, added_cond, cond_count=cond_count)
            if down is None:
                down, mid = own_down, own_mid
                continue
            down = [a + b for a, b in zip(own_down, down, strict=False)] + own_down[len(down):] + down[len(own_down):]
            mid = own_mid if mid is None else own_mid + mid
        return down, mid

    def own_residuals(self, x_in: Tensor, timestep: Tensor, context: Tensor,
                      added_cond: Mapping[str, Tensor] | None, *, cond_count: int = 1,
                      ) -> tuple[list[Tensor], Tensor]:
        """This link's residuals (``strength`` applied), whatever the sigma."""
        from visionatrix.nodes import context as node_context

        self.check_fits(context, added_cond)
        module = self.net.module
        manager = node_context.current().models
        holding = manager.use(module) if manager is not None else contextlib.nullcontext(module)
        with holding, torch.no_grad():
            parameter = next(module.parameters())
            device, dtype = parameter.device, parameter.dtype
            batch = x_in.shape[0]
            sample = x_in[:, : self.net.in_channels] if x_in.shape[1] > self.net.in_channels else x_in
            added = None
            if added_cond:
                added = {key: _batched(value, batch).to(device=device, dtype=dtype)
                         for key, value in added_cond.items()}
            down, mid = module(
                sample=sample.to(device=device, dtype=dtype),
                timestep=torch.as_tensor(timestep).to(device=device),
                encoder_hidden_states=_batched(context, batch).to(device=device, dtype=dtype),
                controlnet_cond=self.prepared_hint(x_in, device, dtype, cond_count),
                conditioning_scale=float(self.strength),
                added_cond_kwargs=added,
                return_dict=False,
            )
        out = {"device": x_in.device, "dtype": x_in.dtype}
        return [residual.to(**out) for residual in down], mid.to(**out)

    def check_fits(self, context: Tensor, added_cond: Mapping[str, Tensor] | None) -> None:
        """:class:`InvalidInput` when the ControlNet is for another family than the model it is used with."""
        net = self.net
        family = FAMILY_NAMES.get(net.family, str(net.family))
        width = int(context.shape[-1])
        if width != net.context_dim:
            guess = CONTEXT_WIDTHS.get(width)
            model = f"the model is {guess} (text context {width} wide)" if guess else \
                f"the model's text context is {width} wide"
            raise InvalidInput("control_net", f"{net.label} is a ControlNet for {family} (text context "
                                              f"{net.context_dim} wide); {model}")
        if net.takes_added_cond and not added_cond:
            raise InvalidInput("control_net", f"{net.label} is a ControlNet for {family}, which takes SDXL's pooled "
                                              "text and size conditioning; the model gives none (not SDXL)")
        if not net.takes_added_cond and added_cond:
            raise InvalidInput("control_net", f"{net.label} is a ControlNet for {family}; the model is SDXL (it "
                                              "gives pooled text and size conditioning)")

    def prepared_hint(self, x_in: Tensor, device: Any, dtype: Any, cond_count: int = 1) -> Tensor:
        """The hint as ``[B, C, H, W]`` at ``x_in``'s size x 8 and batch (cached per size, batch and dtype)."""
        height, width, batch = x_in.shape[-2] * LATENT_SCALE, x_in.shape[-1] * LATENT_SCALE, x_in.shape[0]
        key = (height, width, batch, cond_count, str(device), str(dtype))
        cached = self._hints.get(key)
        if cached is None:
            cached = prepare_hint(self.hint, height, width, batch, self.net, cond_count).to(device=device, dtype=dtype)
            self._hints.clear()
            self._hints[key] = cached
        return cached


def prepare_hint(image: Tensor, height: int, width: int, batch: int, net: ControlNet | None = None,
                 cond_count: int = 1) -> Tensor:
    """IMAGE ``[B, H, W, C]`` -> ``[batch, C, height, width]`` float32: centre-cropped to the target's aspect ratio
    and resized with nearest-exact when its size differs (ComfyUI's behaviour). ``batch`` holds ``cond_count``
    latent batches: the images are dealt in turn over one latent batch, and that is repeated for each."""
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4:
        raise InvalidInput("image", f"expected an image [batch, height, width, channels], got {list(image.shape)}")
    if net is not None and image.shape[-1] != net.conditioning_channels:
        raise InvalidInput("image", f"{net.label} takes {net.conditioning_channels}-channel images, got "
                                    f"{image.shape[-1]} channels")
    pixels = image.movedim(-1, 1).float()
    if tuple(pixels.shape[-2:]) != (height, width):
        pixels = F.interpolate(center_crop(pixels, height, width), size=(height, width), mode=HINT_RESIZE)
    count = pixels.shape[0]
    if count == batch:
        return pixels
    if count == 1:
        return pixels.expand(batch, -1, -1, -1)
    per_latent_batch = max(1, batch // max(1, cond_count))
    order = torch.arange(per_latent_batch, device=pixels.device) % count
    return pixels[order.repeat(-(-batch // per_latent_batch))[:batch]]


def center_crop(pixels: Tensor, height: int, width: int) -> Tensor:
    """``[B, C, H, W]`` with equal margins cut off its long side to get the aspect ratio of ``width x height``."""
    old_h, old_w = pixels.shape[-2], pixels.shape[-1]
    old_aspect, new_aspect = old_w / old_h, width / height
    x = y = 0
    if old_aspect > new_aspect:
        x = round((old_w - old_w * (new_aspect / old_aspect)) / 2)
    elif old_aspect < new_aspect:
        y = round((old_h - old_h * (old_aspect / new_aspect)) / 2)
    return pixels[..., y: old_h - y, x: old_w - x]


def _batched(tensor: Tensor, batch: int) -> Tensor:
    """``tensor`` with a batch of ``batch`` (a batch of 1 is expanded)."""
    if tensor.shape[0] == batch:
        return tensor
    if tensor.shape[0] == 1:
        return tensor.expand(batch, *tensor.shape[1:])
    raise InvalidInput("conditioning", f"batch of {tensor.shape[0]} does not fit a latent batch of {batch}")
