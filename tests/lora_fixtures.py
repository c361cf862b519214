"""Tiny random LoRAs for the tiny checkpoints of ``tests/diffusion_fixtures.py``, in the key formats trainers write.

Formats (``make_lora(kind, fmt)``):

- ``kohya``: ``lora_unet_*`` / ``lora_te_*`` with ``lora_down`` / ``lora_up`` / ``alpha``. SD1 UNet names are
  diffusers paths with underscores (sd-scripts trains a diffusers UNet); SDXL names are LDM paths
  (``lora_unet_input_blocks_4_1_...``), text encoders ``lora_te1_`` (CLIP-L) and ``lora_te2_`` (bigG);
- ``diffusers``: peft keys ``unet.<path>.lora_A.weight`` / ``lora_B.weight``, ``text_encoder.`` /
  ``text_encoder_2.``, no alpha (scale 1);
- ``comfy``: ``diffusion_model.<LDM path>.lora_down.weight`` / ``lora_up.weight`` / ``alpha`` and
  ``text_encoders.clip_l.transformer.text_model.*``; 1x1-conv factors stored 2-D (as linear layers).

LDM names come from ``diffusion_fixtures.unet_to_ldm`` (the fixtures' own reverse map), not from the code under
test. ``layers``: ``attention`` (a plain LoRA: the transformer blocks' linear layers and projections) or ``all``
(LoCon: also the ResNet, sampler and embedding convolutions, 3x3 kernels included). Factors: rank 4, random up
and down (the delta is visible), alpha 2 unless asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from tests import diffusion_fixtures

RANK = 4
ALPHA = 2.0
FORMATS = ("kohya", "diffusers", "comfy")


def unet_ldm_names(unet: torch.nn.Module) -> dict[str, str]:
    """Diffusers module path -> LDM module path of every UNet weight, through the fixtures' reverse map."""
    keys = list(unet.state_dict())
    placeholders: dict[str, Any] = {key: torch.tensor(number) for number, key in enumerate(keys)}
    ldm = diffusion_fixtures.unet_to_ldm(placeholders)
    return {keys[int(value)].removesuffix(".weight"): key.removesuffix(".weight") for key, value in ldm.items()
            if key.endswith(".weight")}


def lora_layers(module: torch.nn.Module, layers: str = "attention") -> dict[str, tuple[int, ...]]:
    """Module path -> weight shape of the layers a LoRA of ``layers`` adapts."""
    out: dict[str, tuple[int, ...]] = {}
    for key, parameter in module.named_parameters():
        if not key.endswith(".weight") or parameter.ndim < 2 or "embeddings" in key or "text_projection" in key:
            continue
        path = key.removesuffix(".weight")
        if layers == "attention" and not (".attentions." in path or ".layers." in path):
            continue
        out[path] = tuple(parameter.shape)
    return out


def factors(shape: tuple[int, ...], rank: int, generator: torch.Generator, flat: bool = False,
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(down, up) for a weight of ``shape``: linear ``[r, in]`` / ``[out, r]``; conv ``[r, in, k, k]`` /
    ``[out, r, 1, 1]`` (``flat``: 1x1 convs as 2-D factors)."""
    out, inner = shape[0], shape[1]
    if len(shape) == 4 and not (flat and shape[2:] == (1, 1)):
        down = torch.randn(rank, inner, *shape[2:], generator=generator) * 0.2
        up = torch.randn(out, rank, 1, 1, generator=generator) * 0.2
    else:
        down = torch.randn(rank, inner, generator=generator) * 0.2
        up = torch.randn(out, rank, generator=generator) * 0.2
    return down, up


def text_prefixes(kind: str, fmt: str) -> dict[str, str]:
    """Encoder name -> key prefix (before the ``text_model.`` path) of ``fmt`` for checkpoint ``kind``."""
    sdxl = kind.startswith("sdxl") or kind == "playground25"
    if fmt == "kohya":
        return {"clip_l": "lora_te1_", "clip_g": "lora_te2_"} if sdxl else {"clip_l": "lora_te_"}
    if fmt == "diffusers":
        return {"clip_l": "text_encoder.", "clip_g": "text_encoder_2."} if sdxl else {"clip_l": "text_encoder."}
    return {"clip_l": "text_encoders.clip_l.transformer.", "clip_g": "text_encoders.clip_g.transformer."}


def make_lora(kind: str = "sd15", fmt: str = "kohya", *, layers: str = "attention", rank: int = RANK,
              alpha: float | None = ALPHA, seed: int = 0, text: bool = True,
              record: dict[str, tuple[str, str]] | None = None) -> dict[str, torch.Tensor]:
    """A random LoRA for the tiny checkpoint ``kind`` in format ``fmt`` (see the module docstring). ``record``
    receives each LoRA module's name -> (target, parameter key) it was made for."""
    record = {} if record is None else record
    checkpoint = diffusion_fixtures.cached_checkpoint(kind)
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    ldm = unet_ldm_names(checkpoint.unet)
    sdxl_names = kind.startswith("sdxl") or kind == "playground25"
    for path, shape in lora_layers(checkpoint.unet, layers).items():
        if fmt == "kohya":
            name = "lora_unet_" + (ldm[path] if sdxl_names else path).replace(".", "_")
        elif fmt == "diffusers":
            name = f"unet.{path}"
        else:
            name = f"diffusion_model.{ldm[path]}"
        _add(state, name, fmt, factors(shape, rank, generator, flat=fmt == "comfy"), alpha)
        record[name] = ("unet", f"{path}.weight")
    if text:
        prefixes = text_prefixes(kind, fmt)
        for encoder, module in checkpoint.text_encoders.items():
            for path, shape in lora_layers(module).items():
                canonical = path if path.startswith("text_model.") else f"text_model.{path}"
                name = prefixes[encoder] + (canonical.replace(".", "_") if fmt == "kohya" else canonical)
                _add(state, name, fmt, factors(shape, rank, generator), alpha)
                record[name] = (encoder, f"{path}.weight")
    return state


def _add(state: dict[str, torch.Tensor], name: str, fmt: str, pair: tuple[torch.Tensor, torch.Tensor],
         alpha: float | None) -> None:
    down, up = pair
    if fmt == "diffusers":
        state[f"{name}.lora_A.weight"], state[f"{name}.lora_B.weight"] = down, up
        return
    state[f"{name}.lora_down.weight"], state[f"{name}.lora_up.weight"] = down, up
    if alpha is not None:
        state[f"{name}.alpha"] = torch.tensor(alpha)


def reference_delta(state: dict[str, torch.Tensor], name: str, shape: tuple[int, ...], strength: float = 1.0,
                    ) -> torch.Tensor:
    """The textbook LoRA delta of module ``name`` for a weight of ``shape``: strength * alpha / rank * up @ down."""
    down = state.get(f"{name}.lora_down.weight", state.get(f"{name}.lora_A.weight"))
    up = state.get(f"{name}.lora_up.weight", state.get(f"{name}.lora_B.weight"))
    assert down is not None and up is not None, name
    rank = down.shape[0]
    alpha = float(state[f"{name}.alpha"]) if f"{name}.alpha" in state else rank
    return (strength * alpha / rank * (up.double().reshape(up.shape[0], -1) @ down.double().reshape(rank, -1))
            ).reshape(shape)


Applied = tuple[dict[str, torch.Tensor], dict[str, tuple[str, str]], float]
"""(LoRA tensors, its ``record`` from :func:`make_lora`, strength)."""


def patched_copy(module: torch.nn.Module, loras: list[Applied], target: str) -> torch.nn.Module:
    """A deep copy of ``module`` (the ``target``) with each LoRA's textbook deltas added in float64, the
    reference the code under test is checked against."""
    import copy

    patched = copy.deepcopy(module)
    params = dict(patched.named_parameters())
    with torch.no_grad():
        for state, record, strength in loras:
            for name, (where, key) in record.items():
                if where == target:
                    weight = params[key]
                    weight.copy_((weight.double() + reference_delta(state, name, tuple(weight.shape), strength)
                                  ).to(weight.dtype))
    return patched


def write_lora(state: dict[str, torch.Tensor], directory: Path, name: str) -> Path:
    """Save ``state`` as ``<name>.safetensors`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.safetensors"
    save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    return path
