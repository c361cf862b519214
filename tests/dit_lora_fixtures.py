"""Tiny random LoRAs for the tiny Flux and SD3 transformers (``tests/flux_fixtures.py``, ``tests/sd3_fixtures.py``)
and their text encoders, in the key formats trainers write, with the references they are checked against.

LoRAs on the original layout are made from the original file itself: every 2-D weight of the BFL file (Flux, from
the fixtures' own diffusers->BFL map) or the MMDiT file (SD3) gets a module, so fused ``qkv`` / ``linear1`` tensors
get one module each, the final modulation too. The reference is the original file with each module's textbook
delta added in float64, loaded by the project's loader (which is checked against diffusers' converters in the dit
tests): the LoRA applied by hand to the fused tensor, then converted.

Formats (``original_lora(weights, fmt)``): ``kohya`` (``lora_unet_<path with underscores>``, ``lora_down`` /
``lora_up`` / ``alpha``), ``comfy`` (``diffusion_model.<path>``, ``lora_down`` / ``lora_up`` / ``alpha``), ``bfl``
(bare ``<path>``, ``lora_A`` / ``lora_B``, no alpha). Algorithms: ``lora``, ``loha``, ``lokr``, ``full``
(``.diff``). :func:`diffusers_lora` writes diffusers/peft keys (``transformer.<path>.lora_A.weight``) from the
diffusers module; :func:`xlabs_lora` XLabs' Flux keys.
"""

from __future__ import annotations

from typing import Any

import torch

from tests import flux_fixtures, sd3_fixtures

RANK = 4
ALPHA = 2.0
FORMATS = ("kohya", "comfy", "bfl")
ALGORITHMS = ("lora", "loha", "lokr", "full")
Record = dict[str, str]
"""LoRA module name -> the original weight key it was made for."""


def flux_original(variant: str = "dev") -> dict[str, torch.Tensor]:
    """The tiny Flux ``variant`` as its BFL file holds it (no prefix)."""
    return flux_fixtures.diffusers_to_bfl(flux_fixtures.flux_model(variant).state_dict())


def sd3_original(kind: str) -> dict[str, torch.Tensor]:
    """The tiny SD3 ``kind`` as its MMDiT file holds it (no prefix)."""
    return dict(sd3_fixtures.cached_checkpoint(kind).state_dict)


def adapted(weights: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """Module path -> shape of every 2-D weight a LoRA adapts (embedding tables and positions left out)."""
    return {key.removesuffix(".weight"): tuple(value.shape) for key, value in weights.items()
            if key.endswith(".weight") and value.ndim == 2}


def original_lora(weights: dict[str, torch.Tensor], fmt: str = "kohya", *, algorithm: str = "lora",
                  rank: int = RANK, alpha: float | None = ALPHA, seed: int = 0, only: tuple[str, ...] = (),
                  biases: bool = False, record: Record | None = None) -> dict[str, torch.Tensor]:
    """A random LoRA on every 2-D weight of the original ``weights`` (``only``: the paths containing one of these
    pieces), in format ``fmt`` (see the module docstring); ``biases``: each module also changes its layer's bias
    (``diff_b``, a full difference)."""
    record = {} if record is None else record
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for path, shape in adapted(weights).items():
        if only and not any(piece in path for piece in only):
            continue
        name = {"kohya": "lora_unet_" + path.replace(".", "_"), "comfy": f"diffusion_model.{path}",
                "bfl": path}[fmt]
        state |= module_tensors(name, shape, algorithm, rank, alpha if fmt != "bfl" else None, generator,
                                peft_names=fmt == "bfl")
        if biases and f"{path}.bias" in weights:
            state[f"{name}.diff_b"] = torch.randn(shape[0], generator=generator) * 0.05
        record[name] = f"{path}.weight"
    return state


def module_tensors(name: str, shape: tuple[int, ...], algorithm: str, rank: int, alpha: float | None,
                   generator: torch.Generator, peft_names: bool = False) -> dict[str, torch.Tensor]:
    """One module's tensors for a weight of ``shape`` (2-D)."""
    out, inner = shape

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=generator) * 0.2

    tensors: dict[str, torch.Tensor] = {}
    if algorithm == "lora":
        down, up = randn(rank, inner), randn(out, rank)
        if peft_names:
            tensors = {f"{name}.lora_A.weight": down, f"{name}.lora_B.weight": up}
        else:
            tensors = {f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up}
    elif algorithm == "loha":
        tensors = {f"{name}.hada_w1_a": randn(out, rank), f"{name}.hada_w1_b": randn(rank, inner),
                   f"{name}.hada_w2_a": randn(out, rank), f"{name}.hada_w2_b": randn(rank, inner)}
    elif algorithm == "lokr":  # whole factors: kron([2, 4], [out/2, in/4]) (no alpha scaling)
        tensors = {f"{name}.lokr_w1": randn(2, 4), f"{name}.lokr_w2": randn(out // 2, inner // 4)}
        return tensors
    else:
        return {f"{name}.diff": randn(out, inner) * 0.1}
    if alpha is not None:
        tensors[f"{name}.alpha"] = torch.tensor(alpha)
    return tensors


def textbook_delta(state: dict[str, torch.Tensor], name: str, strength: float = 1.0) -> torch.Tensor:
    """The float64 change module ``name`` of ``state`` makes to its (whole, original) weight."""
    def get(suffix: str) -> torch.Tensor | None:
        value = state.get(name + suffix)
        return None if value is None else value.double()

    alpha_tensor = state.get(f"{name}.alpha")
    if (diff := get(".diff")) is not None:
        return strength * diff
    if (w1 := get(".lokr_w1")) is not None:
        w2 = get(".lokr_w2")
        assert w2 is not None
        return strength * torch.kron(w1, w2)
    if (w1_a := get(".hada_w1_a")) is not None:
        w1_b, w2_a, w2_b = get(".hada_w1_b"), get(".hada_w2_a"), get(".hada_w2_b")
        assert w1_b is not None and w2_a is not None and w2_b is not None
        scale = float(alpha_tensor) / w1_b.shape[0] if alpha_tensor is not None else 1.0
        return strength * scale * (w1_a @ w1_b) * (w2_a @ w2_b)
    down = get(".lora_down.weight") if get(".lora_down.weight") is not None else get(".lora_A.weight")
    if down is None:
        down = get(".down.weight")
    up = next(value for suffix in (".lora_up.weight", ".lora_B.weight", ".up.weight")
              if (value := get(suffix)) is not None)
    assert down is not None
    scale = float(alpha_tensor) / down.shape[0] if alpha_tensor is not None else 1.0
    return strength * scale * (up @ down)


def patched_original(weights: dict[str, torch.Tensor], state: dict[str, torch.Tensor], record: Record,
                     strength: float = 1.0, rows: dict[str, tuple[int, int]] | None = None,
                     ) -> dict[str, torch.Tensor]:
    """``weights`` with each recorded module's textbook delta added in float64 (``rows``: a module that adds to
    only these rows of its weight, as XLabs' single-block ``qkv_lora``)."""
    rows = rows or {}
    out = dict(weights)
    for name, key in record.items():
        delta = textbook_delta(state, name, strength)
        base = out[key].double().clone()
        start, stop = rows.get(name, (0, base.shape[0]))
        base[start:stop] += delta
        out[key] = base.to(weights[key].dtype)
        if f"{name}.diff_b" in state:
            bias = key.removesuffix("weight") + "bias"
            out[bias] = (out[bias].double() + strength * state[f"{name}.diff_b"].double()).to(weights[bias].dtype)
    return out


def diffusers_lora(module: torch.nn.Module, *, rank: int = RANK, seed: int = 0, prefix: str = "transformer.",
                   record: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """A random diffusers/peft LoRA (``<prefix><path>.lora_A.weight`` / ``lora_B``, no alpha) on every linear
    weight of ``module``'s blocks."""
    record = {} if record is None else record
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, parameter in module.named_parameters():
        if not key.endswith(".weight") or parameter.ndim != 2 or "transformer_blocks." not in key:
            continue
        path = key.removesuffix(".weight")
        state |= module_tensors(prefix + path, tuple(parameter.shape), "lora", rank, None, generator,
                                peft_names=True)
        record[prefix + path] = key
    return state


XLABS_DOUBLE = {"qkv_lora1": "img_attn.qkv", "qkv_lora2": "txt_attn.qkv", "proj_lora1": "img_attn.proj",
                "proj_lora2": "txt_attn.proj"}


def xlabs_lora(weights: dict[str, torch.Tensor], *, hidden: int, rank: int = RANK, seed: int = 0,
               singles: bool = True, prefix: str = "", record: Record | None = None,
               rows: dict[str, tuple[int, int]] | None = None) -> dict[str, torch.Tensor]:
    """A random XLabs Flux LoRA (``double_blocks.N.processor.qkv_lora1.down.weight`` ...; ``singles``: also
    ``single_blocks.N.processor.qkv_lora`` on the q, k, v rows of ``linear1``), no alpha. ``rows`` receives the
    rows of the original weight each module adds to."""
    record = {} if record is None else record
    rows = {} if rows is None else rows
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    blocks = sorted({".".join(key.split(".")[:2]) for key in weights if key.startswith("double_blocks.")})
    for block in blocks:
        for xlabs, inner in XLABS_DOUBLE.items():
            shape = tuple(weights[f"{block}.{inner}.weight"].shape)
            name = f"{prefix}{block}.processor.{xlabs}"
            down, up = (torch.randn(rank, shape[1], generator=generator) * 0.2,
                        torch.randn(shape[0], rank, generator=generator) * 0.2)
            state |= {f"{name}.down.weight": down, f"{name}.up.weight": up}
            record[name] = f"{block}.{inner}.weight"
    if singles:
        for block in sorted({".".join(key.split(".")[:2]) for key in weights if key.startswith("single_blocks.")}):
            inputs = weights[f"{block}.linear1.weight"].shape[1]
            name = f"{prefix}{block}.processor.qkv_lora"
            state |= {f"{name}.down.weight": torch.randn(rank, inputs, generator=generator) * 0.2,
                      f"{name}.up.weight": torch.randn(3 * hidden, rank, generator=generator) * 0.2}
            record[name] = f"{block}.linear1.weight"
            rows[name] = (0, 3 * hidden)
    return state


def text_lora(module: torch.nn.Module, prefix: str, *, kohya: bool = True, seed: int = 0, target: str = "",
              record: dict[str, tuple[str, str]] | None = None) -> dict[str, torch.Tensor]:
    """A random LoRA on every linear layer of a text encoder's blocks: ``<prefix><path with underscores>`` (kohya,
    ``lora_down``/``lora_up``/``alpha``) or ``<prefix><path>`` (peft ``lora_A``/``lora_B``). CLIP paths are
    written under ``text_model.`` as trainers do; ``record`` gets name -> (target, parameter key)."""
    record = {} if record is None else record
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, parameter in module.named_parameters():
        if not key.endswith(".weight") or parameter.ndim != 2 or not (".layers." in key or ".block." in key):
            continue
        if "relative_attention_bias" in key:
            continue
        path = key.removesuffix(".weight")
        if ".layers." in key and not path.startswith("text_model."):
            path = f"text_model.{path}"
        name = prefix + (path.replace(".", "_") if kohya else path)
        state |= module_tensors(name, tuple(parameter.shape), "lora", RANK, ALPHA if kohya else None, generator,
                                peft_names=not kohya)
        record[name] = (target, key)
    return state


def flux_inputs(model: Any) -> dict[str, torch.Tensor]:
    return flux_fixtures.flux_inputs(dict(model.config))


def sd3_inputs(model: Any, seed: int = 0) -> dict[str, torch.Tensor]:
    config = model.config
    generator = torch.Generator().manual_seed(seed)
    return {"hidden_states": torch.randn(1, config.in_channels, 8, 8, generator=generator),
            "encoder_hidden_states": torch.randn(1, 7, config.joint_attention_dim, generator=generator),
            "pooled_projections": torch.randn(1, config.pooled_projection_dim, generator=generator),
            "timestep": torch.tensor([700.0])}
