"""Tiny random-weight Stable Diffusion checkpoints with the real architectures, written in the real single-file
(LDM/ComfyUI) layout users download.

Each kind is built as diffusers/transformers modules from tiny config dicts, then its weights are written under
the LDM keys through our own diffusers->LDM reverse maps (no installed package ships one):

- ``sd15``: UNet ``model.diffusion_model.*`` (1x1-conv projections, 8 heads), VAE ``first_stage_model.*``,
  CLIP-L ``cond_stage_model.transformer.text_model.*``;
- ``sd15_inpaint``: the same with 9 UNet input channels;
- ``sd2``: linear projections, heads of width 64, OpenCLIP ``cond_stage_model.model.*`` (fused
  ``transformer.resblocks.N.attn.in_proj_weight``, ``text_projection`` as ``x @ P``, ``ln_final``,
  ``token_embedding``, ``positional_embedding``). v-prediction does not show in weights;
- ``sdxl``: two encoders, CLIP-L ``conditioner.embedders.0.transformer.text_model.*`` and OpenCLIP bigG
  ``conditioner.embedders.1.model.*``; ``label_emb`` fed by pooled (320) + 6 x 64 size/crop embeddings = 704,
  keeping the family's ratio (real: 1280 + 6 x 256 = 2816 = 11 x 256);
- ``sdxl_inpaint``: the same with 9 input channels;
- ``sdxl_refiner``: bigG only, at ``conditioner.embedders.0.model.*``; context 320, ``label_emb`` 320 + 5 x 64 = 640
  = 2 x context (real: 2560 = 2 x 1280);
- ``playground25``: the SDXL architecture plus the top-level ``edm_mean``/``edm_std`` tensors of Playground 2.5.

Tiny dims obey each family's head rule (SD1: 8 heads; SD2/SDXL and the text encoders: heads of width 64), so
tiny and real files take one loading path. Every parameter is perturbed from its init, so a swapped or missing
weight changes outputs.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

SEED = 2026
VOCAB = 49408
"""CLIP's real vocabulary size, so prompts tokenized by the real tokenizer fit the tiny encoders."""
POSITIONS = 77
"""CLIP's real context length (77 tokens)."""
CLIP_L = {"hidden_size": 64, "layers": 2, "act": "quick_gelu"}
OPEN_CLIP_H = {"hidden_size": 128, "layers": 2, "act": "gelu"}
OPEN_CLIP_G = {"hidden_size": 320, "layers": 2, "act": "gelu"}
SDXL_TIME_DIM = 64

SD1_UNET: dict[str, Any] = {
    "block_out_channels": (32, 64), "layers_per_block": 1, "attention_head_dim": 8,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"), "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 64,
}
SD2_UNET: dict[str, Any] = {**SD1_UNET, "block_out_channels": (64, 128), "attention_head_dim": (1, 2),
                            "use_linear_projection": True, "cross_attention_dim": 128}
SDXL_UNET: dict[str, Any] = {
    "block_out_channels": (64, 64, 128), "layers_per_block": 1, "attention_head_dim": (1, 1, 2),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "transformer_layers_per_block": (1, 1, 2), "use_linear_projection": True, "cross_attention_dim": 64 + 320,
    "addition_embed_type": "text_time", "addition_time_embed_dim": SDXL_TIME_DIM,
    "projection_class_embeddings_input_dim": 320 + 6 * SDXL_TIME_DIM,
}
REFINER_UNET: dict[str, Any] = {
    **SDXL_UNET, "block_out_channels": (64, 128, 128), "attention_head_dim": (1, 2, 2),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), "transformer_layers_per_block": 2,
    "cross_attention_dim": 320, "projection_class_embeddings_input_dim": 320 + 5 * SDXL_TIME_DIM,
}
VAE = {"block_out_channels": (32, 32, 32, 32), "layers_per_block": 1, "latent_channels": 4,
       "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4}
"""Four levels like the real VAEs: images are 8 times the latent's size."""

KINDS: dict[str, dict[str, Any]] = {
    "sd15": {"unet": SD1_UNET, "text": {"cond_stage_model.transformer.": ("clip_l", CLIP_L)}},
    "sd15_inpaint": {"unet": {**SD1_UNET, "in_channels": 9},
                     "text": {"cond_stage_model.transformer.": ("clip_l", CLIP_L)}},
    "sd2": {"unet": SD2_UNET, "text": {"cond_stage_model.model.": ("open_clip", OPEN_CLIP_H)}},
    "sdxl": {"unet": SDXL_UNET, "text": {"conditioner.embedders.0.transformer.": ("clip_l", CLIP_L),
                                         "conditioner.embedders.1.model.": ("clip_g", OPEN_CLIP_G)}},
    "sdxl_inpaint": {"unet": {**SDXL_UNET, "in_channels": 9},
                     "text": {"conditioner.embedders.0.transformer.": ("clip_l", CLIP_L),
                              "conditioner.embedders.1.model.": ("clip_g", OPEN_CLIP_G)}},
    "sdxl_refiner": {"unet": REFINER_UNET, "text": {"conditioner.embedders.0.model.": ("clip_g", OPEN_CLIP_G)}},
    "playground25": {"unet": SDXL_UNET, "edm": True,
                     "text": {"conditioner.embedders.0.transformer.": ("clip_l", CLIP_L),
                              "conditioner.embedders.1.model.": ("clip_g", OPEN_CLIP_G)}},
}
PLAYGROUND_EDM_MEAN = (-1.6574, 1.886, -1.383, 2.5155)
PLAYGROUND_EDM_STD = (8.4927, 5.9022, 6.5498, 5.2299)


@dataclass
class TinyCheckpoint:
    """A tiny checkpoint: its LDM-layout tensors and the modules they were made from."""

    kind: str
    state_dict: dict[str, torch.Tensor]
    unet: torch.nn.Module
    vae: torch.nn.Module
    text_encoders: dict[str, torch.nn.Module] = field(default_factory=dict)


def build_checkpoint(kind: str, *, seed: int = SEED) -> TinyCheckpoint:
    """The tiny checkpoint ``kind`` (one of :data:`KINDS`), deterministic for a seed."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    spec = KINDS[kind]
    generator = torch.Generator().manual_seed(seed)
    unet = _perturbed(UNet2DConditionModel(**spec["unet"], norm_num_groups=32), generator)
    vae = _perturbed(AutoencoderKL(**VAE), generator)
    state = {"model.diffusion_model." + k: v for k, v in unet_to_ldm(unet.state_dict()).items()}
    state |= {"first_stage_model." + k: v for k, v in vae_to_ldm(vae.state_dict()).items()}
    encoders: dict[str, torch.nn.Module] = {}
    for prefix, (name, dims) in spec["text"].items():
        if name == "clip_l":
            encoders[name] = _perturbed(_clip_text_model(dims, projection=False), generator)
            state |= {prefix + "text_model." + k: v for k, v in encoders[name].state_dict().items()}
        else:
            encoders[name] = _perturbed(_clip_text_model(dims, projection=True), generator)
            state |= {prefix + k: v for k, v in open_clip_to_ldm(encoders[name].state_dict()).items()}
    if spec.get("edm"):
        state["edm_mean"] = torch.tensor(PLAYGROUND_EDM_MEAN).reshape(1, 4, 1, 1)
        state["edm_std"] = torch.tensor(PLAYGROUND_EDM_STD).reshape(1, 4, 1, 1)
    state = {key: value.detach().contiguous().clone() for key, value in state.items()}
    return TinyCheckpoint(kind, state, unet.eval(), vae.eval(), {k: m.eval() for k, m in encoders.items()})


@functools.cache
def cached_checkpoint(kind: str) -> TinyCheckpoint:
    """:func:`build_checkpoint` with the default seed, built once per process (treat it as read-only)."""
    return build_checkpoint(kind)


def write_checkpoint(checkpoint: TinyCheckpoint, directory: Path) -> Path:
    """Save ``checkpoint`` as ``<kind>.safetensors`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{checkpoint.kind}.safetensors"
    save_file(checkpoint.state_dict, str(path))
    return path


def _clip_text_model(dims: dict[str, Any], *, projection: bool) -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    hidden = dims["hidden_size"]
    config = CLIPTextConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=4 * hidden,
                            num_hidden_layers=dims["layers"], num_attention_heads=hidden // 64,
                            max_position_embeddings=POSITIONS, hidden_act=dims["act"], projection_dim=hidden,
                            bos_token_id=VOCAB - 2, eos_token_id=VOCAB - 1)
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _perturbed(module: Any, generator: torch.Generator) -> Any:
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return module


RESNET_TO_LDM = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
                 ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
UNET_FIXED = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
              "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
              "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}


def unet_to_ldm(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Diffusers ``UNet2DConditionModel`` keys -> LDM ``openaimodel`` keys (no prefix)."""
    per_down = 1 + max(int(m.group(1)) for k in weights if (m := re.match(r"down_blocks\.\d+\.resnets\.(\d+)\.", k)))
    per_up = per_down + 1
    has_attention = {int(m.group(1)) for k in weights if (m := re.match(r"up_blocks\.(\d+)\.attentions\.", k))}
    out: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        out[_unet_key(key, per_down, per_up, has_attention)] = value
    return out


def _unet_key(key: str, per_down: int, per_up: int, up_attention: set[int]) -> str:
    module, _, param = key.rpartition(".")
    if module in UNET_FIXED:
        return f"{UNET_FIXED[module]}.{param}"
    if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        block = 1 + int(m.group(1)) * (per_down + 1) + int(m.group(3))
        return f"input_blocks.{block}.{_inner(m.group(2), m.group(4))}"
    if m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key):
        return f"input_blocks.{(int(m.group(1)) + 1) * (per_down + 1)}.0.op.{m.group(2)}"
    if m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key):
        index = 2 * int(m.group(2)) + (m.group(1) == "attentions")
        return f"middle_block.{index}.{_inner(m.group(1), m.group(3)).split('.', 1)[1]}"
    if m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key):
        block = int(m.group(1)) * per_up + int(m.group(3))
        return f"output_blocks.{block}.{_inner(m.group(2), m.group(4))}"
    if m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key):
        level = int(m.group(1))
        slot = 2 if level in up_attention else 1
        return f"output_blocks.{level * per_up + per_up - 1}.{slot}.conv.{m.group(2)}"
    raise KeyError(f"no LDM name for UNet key {key!r}")


def _inner(kind: str, rest: str) -> str:
    """``0.<resnet key in LDM names>`` for a resnet, ``1.<rest>`` for an attention (same names in both)."""
    if kind == "attentions":
        return f"1.{rest}"
    for new, old in RESNET_TO_LDM:
        if rest.startswith(new + "."):
            return f"0.{old}{rest[len(new):]}"
    raise KeyError(f"no LDM name for resnet key {rest!r}")


VAE_FIXED = {"conv_norm_out": "norm_out", "mid_block.attentions.0.group_norm": "mid.attn_1.norm",
             "mid_block.attentions.0.to_q": "mid.attn_1.q", "mid_block.attentions.0.to_k": "mid.attn_1.k",
             "mid_block.attentions.0.to_v": "mid.attn_1.v", "mid_block.attentions.0.to_out.0": "mid.attn_1.proj_out"}


def vae_to_ldm(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Diffusers ``AutoencoderKL`` keys -> LDM ``first_stage_model`` keys (no prefix); attention as 1x1 convs."""
    levels = 1 + max(int(m.group(1)) for k in weights if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k)))
    out: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        side, _, rest = key.partition(".")
        module, _, param = rest.rpartition(".")
        if side not in ("encoder", "decoder"):
            out[key] = value
            continue
        if module in VAE_FIXED:
            module = VAE_FIXED[module]
            value = value[:, :, None, None] if value.ndim == 2 else value
        elif m := re.match(r"(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", module):
            level = int(m.group(2)) if m.group(1) == "down" else levels - 1 - int(m.group(2))
            module = f"{m.group(1)}.{level}.block.{m.group(3)}.{m.group(4).replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.match(r"(down|up)_blocks\.(\d+)\.(down|up)samplers\.0\.conv", module):
            level = int(m.group(2)) if m.group(1) == "down" else levels - 1 - int(m.group(2))
            module = f"{m.group(1)}.{level}.{m.group(3)}sample.conv"
        elif m := re.match(r"mid_block\.resnets\.(\d+)\.(.*)", module):
            module = f"mid.block_{int(m.group(1)) + 1}.{m.group(2)}"
        out[f"{side}.{module}.{param}"] = value
    return out


OPEN_CLIP_LAYER = (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"),
                   ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj"))


def open_clip_to_ldm(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers ``CLIPTextModelWithProjection`` keys -> open_clip text-tower keys (fused q/k/v, ``x @ P``)."""
    out = {"token_embedding.weight": weights["text_model.embeddings.token_embedding.weight"],
           "positional_embedding": weights["text_model.embeddings.position_embedding.weight"],
           "ln_final.weight": weights["text_model.final_layer_norm.weight"],
           "ln_final.bias": weights["text_model.final_layer_norm.bias"],
           "text_projection": weights["text_projection.weight"].T}
    for key, value in weights.items():
        m = re.match(r"text_model\.encoder\.layers\.(\d+)\.(.*)\.(weight|bias)$", key)
        if not m:
            continue
        layer, module, param = m.groups()
        base = f"transformer.resblocks.{layer}."
        if module.startswith("self_attn.") and module.endswith(("q_proj", "k_proj", "v_proj")):
            if module.endswith("q_proj"):
                parts = [weights[f"text_model.encoder.layers.{layer}.self_attn.{p}_proj.{param}"] for p in "qkv"]
                out[f"{base}attn.in_proj_{param}"] = torch.cat(parts)
            continue
        for new, old in OPEN_CLIP_LAYER:
            if module == new:
                out[f"{base}{old}.{param}"] = value
                break
        else:
            raise KeyError(f"no open_clip name for {key!r}")
    return out
