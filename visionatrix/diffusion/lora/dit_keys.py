"""LoRA module names for the diffusion transformers (Flux.1, SD3/3.5) and for T5-XXL.

The transformers run as diffusers modules (``FluxTransformer2DModel``, ``SD3Transformer2DModel``), but most LoRAs
name the layers of the original layout: Black Forest Labs' for Flux (``double_blocks.N.img_attn.qkv``,
``single_blocks.N.linear1``), Stability's MMDiT for SD3 (``joint_blocks.N.x_block.attn.qkv``). Accepted, for a
diffusers module path ``P`` with original path ``O``:

- original names: kohya ``lora_unet_<O with underscores>`` (early Flux sd-scripts: ``lora_flux_``), LyCORIS
  ``lycoris_<O ...>``, ComfyUI ``diffusion_model.O`` (also under ``model.``), bare ``O`` (BFL's own LoRAs);
- diffusers names: diffusers/peft and ai-toolkit ``transformer.P``, bare ``P``, OneTrainer
  ``lora_transformer_<P ...>``, SimpleTuner's LyCORIS ``lycoris_<P ...>``, ``lora_unet_<P ...>``;
- XLabs (Flux): ``double_blocks.N.processor.qkv_lora1`` / ``qkv_lora2`` (image / text q, k, v), ``proj_lora1`` /
  ``proj_lora2``, ``single_blocks.N.processor.qkv_lora`` (the q, k, v rows of ``linear1``) / ``proj_lora``, with
  or without ``diffusion_model.``.

An original tensor that is several diffusers weights (a fused ``qkv``; Flux's ``linear1``, q, k, v and the MLP
input) is a :class:`Fused` entry: the LoRA's product has the fused tensor's rows, and each diffusers weight takes
its row slice. The final modulation (and SD3's last context modulation) is stored (shift, scale) in the original
layout but (scale, shift) by diffusers: a one-slice entry that swaps the halves. Flux's slices come from the
loader's own map (:func:`visionatrix.diffusion.dit.flux_keys.bfl_key_map`), SD3's from :data:`MMDIT_WHOLE` and
:data:`MMDIT_FUSED` (the renames of diffusers' ``convert_sd3_transformer_checkpoint_to_diffusers``).

T5-XXL (target ``t5xxl``, transformers' ``T5EncoderModel`` paths): kohya ``lora_te3_`` (sd-scripts' SD3 and Flux
prefix; early Flux sd-scripts ``lora_te2_``, accepted when no CLIP-G is among the targets), diffusers
``text_encoder_3.`` (``text_encoder_2.`` without CLIP-G, as Flux pipelines name T5), ComfyUI
``text_encoders.t5xxl.transformer.`` and OneTrainer's ``t5xxl.transformer.``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visionatrix.diffusion.dit import flux_keys

if TYPE_CHECKING:
    from torch.nn import Module

FLUX = "flux"
SD3 = "sd3"
FAMILIES = {"FluxTransformer2DModel": FLUX, "SD3Transformer2DModel": SD3}
"""diffusers class name (or a base's) -> family."""


@dataclass(frozen=True)
class Slice:
    """Rows ``[start, stop)`` of an original (fused) tensor that are the diffusers weight ``key``; ``swap``: the
    weight holds those rows with their two halves exchanged."""

    key: str
    start: int
    stop: int
    swap: bool = False


@dataclass(frozen=True)
class Fused:
    """A LoRA name whose tensor is split over several weights (or stored with its halves swapped): the product must
    have ``rows`` rows; each slice patches one weight of ``target``."""

    target: str
    rows: int
    slices: tuple[Slice, ...]


MMDIT_WHOLE = {
    # diffusers module path -> MMDiT module path (top level)
    "pos_embed.proj": "x_embedder.proj", "context_embedder": "context_embedder", "proj_out": "final_layer.linear",
    "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
    "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
    "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
    "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
}
MMDIT_SWAPPED = {"norm_out.linear": "final_layer.adaLN_modulation.1"}
MMDIT_BLOCK = {
    # inside transformer_blocks.N -> inside joint_blocks.N
    "attn.to_out.0": "x_block.attn.proj", "attn.to_add_out": "context_block.attn.proj",
    "attn2.to_out.0": "x_block.attn2.proj",
    "norm1.linear": "x_block.adaLN_modulation.1", "norm1_context.linear": "context_block.adaLN_modulation.1",
    "ff.net.0.proj": "x_block.mlp.fc1", "ff.net.2": "x_block.mlp.fc2",
    "ff_context.net.0.proj": "context_block.mlp.fc1", "ff_context.net.2": "context_block.mlp.fc2",
}
MMDIT_FUSED = {
    "x_block.attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "context_block.attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
    "x_block.attn2.qkv": ("attn2.to_q", "attn2.to_k", "attn2.to_v"),
}
XLABS_DOUBLE = {"qkv_lora1": "img_attn.qkv", "qkv_lora2": "txt_attn.qkv", "proj_lora1": "img_attn.proj",
                "proj_lora2": "txt_attn.proj"}
XLABS_SINGLE = {"proj_lora": "linear2"}
XLABS_SINGLE_QKV = ("attn.to_q", "attn.to_k", "attn.to_v")
"""XLabs' single-block ``qkv_lora`` adds to the q, k, v rows of ``linear1`` only."""
ORIGINAL_PREFIXES = ("lora_unet_", "lora_flux_", "lycoris_")
"""Kohya-style prefixes before an original path written with underscores (``lora_flux_``: Flux only)."""


def family(module: Module) -> str | None:
    """``flux`` or ``sd3`` for a diffusers Flux / SD3 transformer (by its class or a base class), else None."""
    return next((FAMILIES[cls.__name__] for cls in type(module).__mro__ if cls.__name__ in FAMILIES), None)


def unet_index(module: Module) -> tuple[dict[str, str], dict[str, Fused]]:
    """(name -> weight key, name -> :class:`Fused`) of every accepted name of a DiT's 2-D-and-up weights."""
    kind = family(module)
    shapes = {key: tuple(p.shape) for key, p in module.named_parameters() if key.endswith(".weight") and p.ndim >= 2}
    sources = _flux_sources(module, shapes) if kind == FLUX else _sd3_sources(shapes)
    plain: dict[str, str] = {}
    fused: dict[str, Fused] = {}
    for path in (key.removesuffix(".weight") for key in shapes):
        for name in _diffusers_names(path):
            plain.setdefault(name, f"{path}.weight")
    for original, slices in sources.items():
        whole = len(slices) == 1 and not slices[0].swap
        entry = None if whole else Fused("unet", slices[-1].stop, slices)
        for name in _original_names(original, kind):
            if entry is None:
                plain.setdefault(name, slices[0].key)
            else:
                fused.setdefault(name, entry)
    if kind == FLUX:
        _add_xlabs(sources, plain, fused)
    return plain, fused


def t5_names(path: str, targets: Mapping[str, Any]) -> Iterator[str]:
    """Every accepted LoRA name of the T5 module path ``path`` (see the module docstring)."""
    flat = path.replace(".", "_")
    yield from (f"lora_te3_{flat}", f"text_encoder_3.{path}", f"t5xxl.transformer.{path}",
                f"text_encoders.t5xxl.transformer.{path}")
    if "clip_g" not in targets:
        yield from (f"lora_te2_{flat}", f"text_encoder_2.{path}")


def _diffusers_names(path: str) -> Iterator[str]:
    flat = path.replace(".", "_")
    yield from (f"transformer.{path}", path, f"lora_transformer_{flat}", f"lycoris_{flat}", f"lora_unet_{flat}")


def _original_names(original: str, kind: str | None) -> Iterator[str]:
    flat = original.replace(".", "_")
    for prefix in ORIGINAL_PREFIXES:
        if prefix != "lora_flux_" or kind == FLUX:
            yield prefix + flat
    yield from (f"diffusion_model.{original}", f"model.diffusion_model.{original}", original)


def _flux_sources(module: Module, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[Slice, ...]]:
    """BFL module path -> the diffusers weights it is, from the loader's own key map at this model's sizes."""
    config: Any = module.config
    hidden = int(config.num_attention_heads * config.attention_head_dim)
    singles: Any = getattr(module, "single_transformer_blocks", ())
    doubles: Any = getattr(module, "transformer_blocks", ())
    mlp_hidden = int(singles[0].proj_mlp.out_features) if len(singles) else 4 * hidden
    pieces = flux_keys.bfl_key_map(hidden=hidden, mlp_hidden=mlp_hidden, depth=len(doubles),
                                   single_depth=len(singles), guidance=bool(config.guidance_embeds))
    sources: dict[str, list[Slice]] = {}
    for key, piece in pieces.items():
        if key not in shapes:
            continue
        rows = shapes[key][0]
        start = piece.start or 0
        stop = piece.stop if piece.stop is not None else start + rows
        sources.setdefault(piece.source.removesuffix(".weight"), []).append(Slice(key, start, stop, piece.swap))
    return {source: tuple(sorted(slices, key=lambda s: s.start)) for source, slices in sources.items()}


def _sd3_sources(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[Slice, ...]]:
    """MMDiT module path -> the diffusers weights it is (the renames diffusers' single-file converter makes)."""
    sources: dict[str, tuple[Slice, ...]] = {}

    def whole(diffusers: str, original: str, swap: bool = False) -> None:
        key = f"{diffusers}.weight"
        if key in shapes:
            sources[original] = (Slice(key, 0, shapes[key][0], swap),)

    for diffusers, original in MMDIT_WHOLE.items():
        whole(diffusers, original)
    for diffusers, original in MMDIT_SWAPPED.items():
        whole(diffusers, original, swap=True)
    layers = sorted({int(key.split(".")[1]) for key in shapes if key.startswith("transformer_blocks.")})
    for index in layers:
        block, joint = f"transformer_blocks.{index}.", f"joint_blocks.{index}."
        for diffusers, original in MMDIT_BLOCK.items():
            # the last layer's context stream is "pre only": its modulation is diffusers' continuous AdaLN
            whole(block + diffusers, joint + original, swap=diffusers == "norm1_context.linear" and index == layers[-1])
        for original, parts in MMDIT_FUSED.items():
            if all(f"{block}{part}.weight" in shapes for part in parts):
                sources[joint + original] = _stacked([f"{block}{part}.weight" for part in parts], shapes)
    return sources


def _stacked(keys: list[str], shapes: Mapping[str, tuple[int, ...]]) -> tuple[Slice, ...]:
    slices, start = [], 0
    for key in keys:
        slices.append(Slice(key, start, start + shapes[key][0]))
        start += shapes[key][0]
    return tuple(slices)


def _add_xlabs(sources: Mapping[str, tuple[Slice, ...]], plain: dict[str, str], fused: dict[str, Fused]) -> None:
    for original, slices in sources.items():
        parts = original.split(".", 2)
        if len(parts) < 3 or parts[0] not in ("double_blocks", "single_blocks"):
            continue
        block, rest = f"{parts[0]}.{parts[1]}", parts[2]
        names = XLABS_DOUBLE if parts[0] == "double_blocks" else XLABS_SINGLE
        entries = [(xlabs, slices) for xlabs, inner in names.items() if inner == rest]
        if parts[0] == "single_blocks" and rest == "linear1":
            entries.append(("qkv_lora", tuple(s for s in slices
                                              if s.key.removesuffix(".weight").endswith(XLABS_SINGLE_QKV))))
        for xlabs, chosen in entries:
            for prefix in ("", "diffusion_model."):
                name = f"{prefix}{block}.processor.{xlabs}"
                if len(chosen) == 1 and not chosen[0].swap:
                    plain.setdefault(name, chosen[0].key)
                else:
                    fused.setdefault(name, Fused("unet", chosen[-1].stop, chosen))


def fused_index(targets: Mapping[str, Module]) -> dict[str, Fused]:
    """Every accepted name of a split or swapped original tensor of the targets' DiT (``unet``), if any."""
    unet = targets.get("unet")
    if unet is None or family(unet) is None:
        return {}
    return unet_index(unet)[1]
