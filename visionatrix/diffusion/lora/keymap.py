"""Which weight of which module a LoRA's module name patches, for every key format in use.

LoRA files name the layer they change in one of several spellings. For a UNet weight with the diffusers path
``down_blocks.1.attentions.0.proj_in`` (LDM path ``input_blocks.4.1.proj_in``) all of these are accepted:

- kohya / A1111, diffusers names (SD1 trainers): ``lora_unet_down_blocks_1_attentions_0_proj_in`` (LyCORIS:
  ``lycoris_down_blocks_1_attentions_0_proj_in``);
- kohya, LDM names (SDXL trainers): ``lora_unet_input_blocks_4_1_proj_in``;
- diffusers / peft: ``unet.down_blocks.1.attentions.0.proj_in`` (and the bare path of old attention-processor files);
- ComfyUI: ``diffusion_model.input_blocks.4.1.proj_in`` (also under ``model.``).

Text encoders are named by their transformers path with ``text_model.`` (CLIP-L in transformers 5 has no such
prefix in the module; it is added here): kohya ``lora_te_`` (SD1, SD2), ``lora_te1_`` (SDXL CLIP-L),
``lora_te2_`` (SDXL bigG); diffusers ``text_encoder.`` / ``text_encoder_2.``; ComfyUI
``text_encoders.clip_l.transformer.`` (and without ``text_encoders.``). SD3's CLIP-G is ``clip_g`` (``lora_te2_``,
``text_encoder_2.``). Flux and SD3 transformers and T5-XXL (``t5xxl``) take the names of
:mod:`visionatrix.diffusion.lora.dit_keys`. The index is built forwards, from the modules' own parameter names, so
a kohya name (underscores for dots) never has to be parsed.
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from visionatrix.diffusion.lora import dit_keys

if TYPE_CHECKING:
    from torch.nn import Module

Index = dict[str, tuple[str, str]]
"""LoRA module name -> (target name, parameter key in that target's ``named_parameters()``)."""

RESNET_TO_LDM = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
                 "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
UNET_FIXED_TO_LDM = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
                     "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
                     "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}
TEXT_TARGETS = ("clip_l", "clip_g", "open_clip")
COMFY_TEXT_NAMES = {"clip_l": ("clip_l",), "clip_g": ("clip_g",), "open_clip": ("clip_h", "clip_g")}
OLD_PROCESSOR_NAMES = (
    (re.compile(r"\.processor\.to_(q|k|v)_lora$"), r".to_\1"), (re.compile(r"\.processor\.to_out_lora$"), ".to_out.0"),
    (re.compile(r"\.self_attn\.to_(q|k|v)_lora$"), r".self_attn.\1_proj"),
    (re.compile(r"\.self_attn\.to_out_lora$"), ".self_attn.out_proj"),
)
"""Old diffusers attention-processor LoRAs name a projection's LoRA, not the projection."""

_cache: weakref.WeakKeyDictionary[Module, dict[str, str]] = weakref.WeakKeyDictionary()


def normalize(name: str) -> str:
    """``name`` with old diffusers attention-processor spellings turned into the projection's path."""
    for pattern, replacement in OLD_PROCESSOR_NAMES:
        if pattern.search(name):
            return pattern.sub(replacement, name)
    return name


def build_index(targets: Mapping[str, Module]) -> Index:
    """Every accepted LoRA module name of every weight (2-D and up) of ``targets`` (see the module docstring)."""
    index: Index = {}
    for target, module in targets.items():
        if target == "unet" and dit_keys.family(module) is not None:
            for name, key in dit_keys.unet_index(module)[0].items():
                index.setdefault(name, (target, key))
            continue
        for path, key in _weights(module).items():
            for name in _names(target, path, module, targets):
                index.setdefault(name, (target, key))
    return index


def _names(target: str, path: str, module: Module, targets: Mapping[str, Module]) -> Iterator[str]:
    if target == "unet":
        yield from (f"lora_unet_{_flat(path)}", f"lycoris_{_flat(path)}", f"unet.{path}", path)
        ldm = ldm_paths(module).get(path)
        if ldm is not None:
            yield from (f"lora_unet_{_flat(ldm)}", f"diffusion_model.{ldm}", f"model.diffusion_model.{ldm}")
        return
    if target == "t5xxl":
        yield from dit_keys.t5_names(path, targets)
        return
    if target not in TEXT_TARGETS:
        return
    canonical = path if path.startswith(("text_model.", "text_projection")) else f"text_model.{path}"
    alone = "clip_l" not in targets
    kohya = {"clip_l": ("lora_te_", "lora_te1_"), "clip_g": ("lora_te2_",) + (("lora_te_",) if alone else ()),
             "open_clip": ("lora_te_", "lora_te2_")}[target]
    diffusers = {"clip_l": ("text_encoder.",), "clip_g": ("text_encoder_2.",) + (("text_encoder.",) if alone else ()),
                 "open_clip": ("text_encoder.",)}[target]
    yield from (prefix + _flat(canonical) for prefix in kohya)
    yield from (prefix + canonical for prefix in diffusers)
    for comfy in COMFY_TEXT_NAMES[target]:
        yield from (f"{comfy}.transformer.{canonical}", f"text_encoders.{comfy}.transformer.{canonical}")


def _flat(path: str) -> str:
    return path.replace(".", "_")


def _weights(module: Module) -> dict[str, str]:
    """Module path -> parameter key, for the ``weight`` of every layer with a 2-D or larger weight."""
    out: dict[str, str] = {}
    for key, parameter in module.named_parameters():
        if key.endswith(".weight") and parameter.ndim >= 2:
            out[key[: -len(".weight")]] = key
    return out


def ldm_paths(unet: Module) -> dict[str, str]:
    """Diffusers module path -> LDM (``openaimodel``) module path for every layer of a ``UNet2DConditionModel``,
    read from the module's own structure (resnets per level, which levels attend, samplers)."""
    cached = _cache.get(unet)
    if cached is not None:
        return cached
    blocks = _block_map(unet)
    out: dict[str, str] = {}
    for path in _weights(unet):
        ldm = _ldm_path(path, blocks)
        if ldm is not None:
            out[path] = ldm
    _cache[unet] = out
    return out


def _block_map(unet: Module) -> dict[str, str]:
    """Diffusers block path (``down_blocks.1.resnets.0``) -> LDM block path (``input_blocks.3.0``)."""
    blocks: dict[str, str] = {}
    index = 1
    for level, block in enumerate(getattr(unet, "down_blocks", ())):
        attentions = getattr(block, "attentions", None) or ()
        for i in range(len(block.resnets)):
            blocks[f"down_blocks.{level}.resnets.{i}"] = f"input_blocks.{index}.0"
            if i < len(attentions):
                blocks[f"down_blocks.{level}.attentions.{i}"] = f"input_blocks.{index}.1"
            index += 1
        if getattr(block, "downsamplers", None):
            blocks[f"down_blocks.{level}.downsamplers.0.conv"] = f"input_blocks.{index}.0.op"
            index += 1
    index = 0
    for level, block in enumerate(getattr(unet, "up_blocks", ())):
        attentions = getattr(block, "attentions", None) or ()
        for i in range(len(block.resnets)):
            blocks[f"up_blocks.{level}.resnets.{i}"] = f"output_blocks.{index}.0"
            if i < len(attentions):
                blocks[f"up_blocks.{level}.attentions.{i}"] = f"output_blocks.{index}.1"
            index += 1
        if getattr(block, "upsamplers", None):
            slot = 2 if attentions else 1
            blocks[f"up_blocks.{level}.upsamplers.0.conv"] = f"output_blocks.{index - 1}.{slot}.conv"
    mid = getattr(unet, "mid_block", None)
    if mid is not None:
        for i in range(len(mid.resnets)):
            blocks[f"mid_block.resnets.{i}"] = f"middle_block.{2 * i}"
        for i in range(len(getattr(mid, "attentions", None) or ())):
            blocks[f"mid_block.attentions.{i}"] = f"middle_block.{2 * i + 1}"
    return blocks


_BLOCK = re.compile(r"((?:down_blocks|up_blocks)\.\d+\.(?:resnets|attentions)\.\d+|mid_block\.(?:resnets|attentions)"
                    r"\.\d+|(?:down|up)_blocks\.\d+\.(?:down|up)samplers\.0\.conv)(?:\.(.*))?$")


def _ldm_path(path: str, blocks: Mapping[str, str]) -> str | None:
    if path in UNET_FIXED_TO_LDM:
        return UNET_FIXED_TO_LDM[path]
    match = _BLOCK.match(path)
    if match is None or match.group(1) not in blocks:
        return None
    block, rest = match.group(1), match.group(2)
    base = blocks[block]
    if rest is None:
        return base
    if ".resnets." in block:
        head, _, tail = rest.partition(".")
        if head not in RESNET_TO_LDM:
            return None
        rest = RESNET_TO_LDM[head] + (f".{tail}" if tail else "")
    return f"{base}.{rest}"
