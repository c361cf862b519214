"""Tiny random-weight ControlNets made from the tiny fixture UNets, in both real layouts.

``ControlNetModel.from_unet`` on a UNet of the tiny checkpoint's config (``tests.diffusion_fixtures.KINDS[kind]``:
``sd15``, ``sd2``, ``sdxl``; only the UNet is built, seeded) with the real hint encoder widths (16, 32, 96, 256);
every parameter is then perturbed, zero convolutions included, so residuals are non-zero and a swapped weight shows.
Written as:

- diffusers layout: the module's own keys (``controlnet_cond_embedding.*``, ``controlnet_down_blocks.*``, ...);
- LDM single file (``cldm.ControlNet``): ``input_hint_block.N`` (convolutions at even indices), ``zero_convs.N.0``,
  ``middle_block_out.0`` plus the UNet half under LDM names (``tests.diffusion_fixtures.unet_to_ldm``), with the
  ``control_model.`` prefix or without one.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from tests.diffusion_fixtures import KINDS, unet_to_ldm

SEED = 4242
HINT_CHANNELS = (16, 32, 96, 256)


@dataclass
class TinyControlNet:
    kind: str
    module: Any
    """The diffusers ``ControlNetModel`` (the reference), float32, eval mode."""

    def diffusers_state(self) -> dict[str, torch.Tensor]:
        return {key: value.detach().clone().contiguous() for key, value in self.module.state_dict().items()}

    def ldm_state(self, prefix: str = "control_model.") -> dict[str, torch.Tensor]:
        return {prefix + key: value.contiguous() for key, value in controlnet_to_ldm(self.diffusers_state()).items()}


def build_controlnet(kind: str, *, seed: int = SEED) -> TinyControlNet:
    """A tiny ControlNet for the fixture checkpoint ``kind`` (``sd15``, ``sd2``, ``sdxl``)."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**KINDS[kind]["unet"], norm_num_groups=32)
    module = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=HINT_CHANNELS)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return TinyControlNet(kind, module.eval())


@functools.cache
def cached_controlnet(kind: str) -> TinyControlNet:
    """:func:`build_controlnet` with the default seed, once per process (read-only)."""
    return build_controlnet(kind)


def write_controlnet(net: TinyControlNet, directory: Path, layout: str = "diffusers", *, prefix: str = "control_model.",
                     name: str | None = None) -> Path:
    """Save ``net`` as ``<kind>_<layout>.safetensors`` (or ``name``) in ``directory``; ``layout`` ``diffusers`` or
    ``ldm`` (with ``prefix``)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / (name or f"{net.kind}_{layout}.safetensors")
    state = net.diffusers_state() if layout == "diffusers" else net.ldm_state(prefix)
    save_file(state, str(path))
    return path


def controlnet_to_ldm(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Diffusers ``ControlNetModel`` keys -> LDM ``cldm.ControlNet`` keys (no prefix)."""
    stages = 1 + max(int(m.group(1)) for key in weights
                     if (m := re.match(r"controlnet_cond_embedding\.blocks\.(\d+)\.", key)))
    out: dict[str, torch.Tensor] = {}
    unet_half: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        module, _, param = key.rpartition(".")
        if module == "controlnet_cond_embedding.conv_in":
            out[f"input_hint_block.0.{param}"] = value
        elif m := re.fullmatch(r"controlnet_cond_embedding\.blocks\.(\d+)", module):
            out[f"input_hint_block.{2 * (int(m.group(1)) + 1)}.{param}"] = value
        elif module == "controlnet_cond_embedding.conv_out":
            out[f"input_hint_block.{2 * (stages + 1)}.{param}"] = value
        elif m := re.fullmatch(r"controlnet_down_blocks\.(\d+)", module):
            out[f"zero_convs.{m.group(1)}.0.{param}"] = value
        elif module == "controlnet_mid_block":
            out[f"middle_block_out.0.{param}"] = value
        else:
            unet_half[key] = value
    return out | unet_to_ldm(unet_half)


def inputs(net: TinyControlNet, *, batch: int = 1, size: int = 8, seed: int = 0) -> dict[str, Any]:
    """Random UNet inputs for ``net``: ``x_in`` [batch, 4, size, size], ``timestep``, ``context``, ``added_cond``
    (SDXL) and a hint IMAGE [1, 8 size, 8 size, 3]."""
    generator = torch.Generator().manual_seed(seed)
    config = net.module.config
    result: dict[str, Any] = {
        "x_in": torch.randn(batch, 4, size, size, generator=generator),
        "timestep": torch.tensor(500.0),
        "context": torch.randn(batch, 77, config.cross_attention_dim, generator=generator),
        "added_cond": None,
        "hint": torch.rand(1, 8 * size, 8 * size, 3, generator=generator),
    }
    if config.addition_embed_type == "text_time":
        pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        result["added_cond"] = {"text_embeds": torch.randn(batch, pooled, generator=generator),
                                "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]] * batch)}
    return result


def direct(net: TinyControlNet, x_in: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor,
           added_cond: dict[str, torch.Tensor] | None, hint_bchw: torch.Tensor, scale: float = 1.0,
           ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The reference: the diffusers module called straight."""
    with torch.no_grad():
        down, mid = net.module(sample=x_in, timestep=timestep, encoder_hidden_states=context,
                               controlnet_cond=hint_bchw, conditioning_scale=scale, added_cond_kwargs=added_cond,
                               return_dict=False)
    return list(down), mid
