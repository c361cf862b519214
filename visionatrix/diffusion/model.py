"""MODEL: a diffusion network with how it samples and what is layered on it for one graph.

The network (a diffusers ``UNet2DConditionModel``) is held by the model manager and shared across tasks, so a
:class:`DiffusionModel` never changes it: LoRA patches, sampling overrides (``ModelSamplingDiscrete``) and options
(FreeU, Differential Diffusion) are data on a frozen value, and every ``with_*`` returns a new one. The sampling run
applies the patches for its duration and restores the weights after (:func:`visionatrix.diffusion.patches.applied`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from visionatrix.diffusion.checkpoints.detect import Family
from visionatrix.diffusion.latent_formats import LatentFormat
from visionatrix.diffusion.patches import Patch
from visionatrix.diffusion.sampling.model_sampling import ModelSampling

if TYPE_CHECKING:
    from torch.nn import Module


@dataclass(frozen=True)
class DiffusionModel:
    """ComfyUI's MODEL: ``unet`` (shared, never modified) plus patches, sampling and options for this graph."""

    unet: Module
    family: Family
    in_channels: int
    model_sampling: ModelSampling
    latent_format: LatentFormat
    patches: tuple[Patch, ...] = ()
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    name: str = ""

    def with_patches(self, patches: Sequence[Patch]) -> DiffusionModel:
        """This model with ``patches`` added after the ones it has (LoRAs stack)."""
        return dataclasses.replace(self, patches=self.patches + tuple(patches))

    def with_sampling(self, model_sampling: ModelSampling) -> DiffusionModel:
        return dataclasses.replace(self, model_sampling=model_sampling)

    def with_option(self, key: str, value: Any) -> DiffusionModel:
        return dataclasses.replace(self, options=MappingProxyType({**self.options, key: value}))

    def held_models(self) -> tuple[Any, ...]:
        """The managed modules this value holds (the executor drops cached outputs when the manager drops them)."""
        return (self.unet,)

    @property
    def is_sdxl(self) -> bool:
        return self.family in (Family.SDXL, Family.SDXL_REFINER)

    @property
    def context_width(self) -> int:
        """The width of the text conditioning the network cross-attends to (UNets' cross-attention width, the
        transformers' joint attention or caption width)."""
        config = self.unet.config
        keys = ("caption_channels",) if self.family is Family.PIXART else (
            "cross_attention_dim", "joint_attention_dim", "caption_channels")
        for key in keys:
            value = getattr(config, key, None)
            if value:
                return int(value)
        raise AttributeError(f"no text conditioning width in the {self.family} network's config")

    @property
    def time_ids_count(self) -> int:
        """How many SDXL size/crop/score values the network embeds (6 base, 5 refiner; 0 outside SDXL)."""
        return {Family.SDXL: 6, Family.SDXL_REFINER: 5}.get(self.family, 0)
