"""Tiny random-weight upscale models with the real architectures and the real file layouts, and bad model files.

Good models (spandrel's own architecture classes, so they load exactly like downloaded files):

- ``esrgan_x4``: ESRGAN x4 with the old-arch keys of ``4x-UltraSharp.pth`` (``model.0.weight``,
  ``model.1.sub.0.RDB1.conv1.0.weight``, ...), a plain state dict;
- ``realesrgan_x2``: Real-ESRGAN x2 (the pixel-unshuffle variant: 12 input channels), with BasicSR's keys
  (``conv_first``, ``body.0.rdb1.conv1``, ``conv_body``, ``conv_up1``, ...) under ``params_ema`` as in
  ``RealESRGAN_x2plus.pth``;
- ``compact_x2``: SRVGGNetCompact x2 (``body.0.weight``, ...) under ``params`` as in ``realesr-general-x4v3.pth``.

Each is written as ``.pth`` (``torch.save`` of tensors only: loadable with ``weights_only=True``) and as
``.safetensors`` (the flat state dict). Random ESRGAN weights drive the output to 0 everywhere, so the last
convolution is rescaled to centre the output around 0.5: tile seams and padding then show in comparisons.

Bad files: text named like a model, a truncated safetensors, a pickle whose loading calls a function (``print``:
harmless), and a valid safetensors of a diffusion UNet that no upscaler architecture matches.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

SEED = 1234


def _centre_last_conv(module: torch.nn.Module, last: str, in_channels: int) -> None:
    """Rescale the conv ``last`` (linear in its input) so the module's output on a probe has mean 0.5, std 0.15."""
    probe = torch.rand(2, in_channels, 32, 32, generator=torch.Generator().manual_seed(SEED + 1))
    with torch.no_grad():
        out = module(probe)
        mean, std = out.mean(dim=(0, 2, 3)), out.std(dim=(0, 2, 3)).clamp_min(1e-6)
        factor = 0.15 / std
        conv = module.get_submodule(last)
        conv.weight.mul_(factor[:, None, None, None])
        conv.bias.copy_(factor * (conv.bias - mean) + 0.5)


def esrgan_state_dict(*, scale: int = 4, num_filters: int = 16, num_blocks: int = 2,
                      shuffle_factor: int | None = None, seed: int = SEED) -> dict[str, torch.Tensor]:
    """An ESRGAN (old-arch keys) with random weights; ``shuffle_factor=2`` with ``scale=4`` is Real-ESRGAN x2."""
    from spandrel.architectures.ESRGAN import ESRGAN

    torch.manual_seed(seed)
    in_nc = 3 * (shuffle_factor or 1) ** 2
    module = ESRGAN(in_nc=in_nc, out_nc=3, num_filters=num_filters, num_blocks=num_blocks, scale=scale,
                    shuffle_factor=shuffle_factor)
    last = max(int(m.group(1)) for key in module.state_dict() if (m := re.fullmatch(r"model\.(\d+)\.weight", key)))
    _centre_last_conv(module, f"model.{last}", 3)
    return {key: value.contiguous() for key, value in module.state_dict().items()}


def compact_state_dict(*, scale: int = 2, num_feat: int = 16, num_conv: int = 4,
                       seed: int = SEED) -> dict[str, torch.Tensor]:
    from spandrel.architectures.Compact import Compact

    torch.manual_seed(seed)
    module = Compact(num_in_ch=3, num_out_ch=3, num_feat=num_feat, num_conv=num_conv, upscale=scale)
    return {key: value.contiguous() for key, value in module.state_dict().items()}


def to_basicsr_keys(old: dict[str, torch.Tensor], num_blocks: int) -> dict[str, torch.Tensor]:
    """ESRGAN old-arch keys as BasicSR's RRDBNet names them (what Real-ESRGAN's releases hold)."""
    renamed: dict[str, torch.Tensor] = {}
    fixed = {"model.0": "conv_first", f"model.1.sub.{num_blocks}": "conv_body", "model.3": "conv_up1",
             "model.6": "conv_up2", "model.8": "conv_hr", "model.10": "conv_last"}
    for key, value in old.items():
        block = re.fullmatch(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)", key)
        if block:
            renamed["body.{}.rdb{}.conv{}.{}".format(*block.groups())] = value
            continue
        prefix, kind = key.rsplit(".", 1)
        renamed[f"{fixed[prefix]}.{kind}"] = value
    return renamed


def good_models() -> dict[str, tuple[dict[str, torch.Tensor], str | None, int]]:
    """``name: (state dict, wrapper key of the .pth or None, scale)``."""
    num_blocks = 2
    realesrgan = to_basicsr_keys(esrgan_state_dict(scale=4, shuffle_factor=2, num_blocks=num_blocks), num_blocks)
    return {
        "esrgan_x4": (esrgan_state_dict(scale=4, num_blocks=num_blocks), None, 4),
        "realesrgan_x2": (realesrgan, "params_ema", 2),
        "compact_x2": (compact_state_dict(scale=2), "params", 2),
    }


def write_good_models(folder: Path) -> dict[str, Path]:
    """``<name>.pth`` and ``<name>.safetensors`` of every good model; returns ``{file name: path}``."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, (state_dict, wrapper, _scale) in good_models().items():
        pth = folder / f"{name}.pth"
        torch.save({wrapper: state_dict} if wrapper else state_dict, pth)
        safetensors = folder / f"{name}.safetensors"
        save_file(state_dict, safetensors)
        written[pth.name], written[safetensors.name] = pth, safetensors
    return written


class _CallsPrint:
    """Unpickling this calls ``print``: a stand-in for a pickle that runs code (harmless here)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (print, ("this pickle ran code",))


def unet_like_state_dict() -> dict[str, torch.Tensor]:
    """A few keys of a Stable Diffusion UNet checkpoint: valid tensors, not an upscaler."""
    return {
        "model.diffusion_model.input_blocks.0.0.weight": torch.randn(32, 4, 3, 3),
        "model.diffusion_model.input_blocks.0.0.bias": torch.randn(32),
        "model.diffusion_model.time_embed.0.weight": torch.randn(128, 32),
        "model.diffusion_model.out.2.weight": torch.randn(4, 32, 3, 3),
    }


def write_bad_files(folder: Path) -> dict[str, Path]:
    """``{kind: path}`` for ``text_pth``, ``text_safetensors``, ``truncated``, ``code_pickle``, ``wrong_kind``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "text_pth": folder / "notes.pth",
        "text_safetensors": folder / "readme.safetensors",
        "truncated": folder / "truncated.safetensors",
        "code_pickle": folder / "runs_code.pth",
        "wrong_kind": folder / "sd_unet.safetensors",
    }
    files["text_pth"].write_text("These are my notes about upscalers, not a model.\n")
    files["text_safetensors"].write_text("not a safetensors file either\n")
    whole = folder / "whole.tmp"
    save_file(esrgan_state_dict(), whole)
    data = whole.read_bytes()
    whole.unlink()
    files["truncated"].write_bytes(data[: len(data) // 2])
    torch.save({"model.0.weight": torch.zeros(1), "payload": _CallsPrint()}, files["code_pickle"])
    save_file(unet_like_state_dict(), files["wrong_kind"])
    return files
