"""Tiny random-weight model files for a flow, under the file names and folders its models catalog gives.

For each model a flow loads (``Flow.info()["models"]``: the input that names it, the catalog entry's ``types`` and
``filename``), a tiny file in the real layout is placed in ``<models_dir>/<types[0]>/``:

- ``ckpt_name`` (``checkpoints``): the tiny SDXL checkpoint of :mod:`tests.diffusion_fixtures` (``sdxl``), or the
  Playground 2.5 one (``playground25``: SDXL plus ``edm_mean``/``edm_std``) for models whose catalog entry or file
  names Playground or Prometheus (a Playground 2.5 fine-tune);
- ``lora_name`` (``loras``): a kohya-format SDXL LoRA (``lora_unet_<LDM name>``, ``lora_te1_``/``lora_te2_<text
  model name>``, ``lora_down``/``lora_up``/``alpha``) for that checkpoint's modules, rank 4;
- ``vae_name`` (``vae``): the checkpoint's VAE alone, LDM keys without prefix (as ``sdxl_vae.safetensors``);
- ``model_name`` of ``UpscaleModelLoader`` (``upscale_models``): ESRGAN x4 (or Real-ESRGAN x2 for an ``x2`` name)
  of :mod:`tests.model_fixtures`, as ``.pth``.

Flux.1 and SD3.5 flows get the tiny files of :mod:`tests.dit_flow_files` (one set: every file fits every other):

- ``unet_name`` (``diffusion_models``): the Flux transformer in BFL layout its names say (``fill``, ``schnell``,
  else dev; Kontext is dev weights);
- ``clip_name*`` (``text_encoders``): CLIP-L, CLIP-G, T5-XXL (fp16) or T5-XXL fp8 by name; beside any T5 file goes
  T5's tokenizer (``text_encoders/t5_tokenizer/tokenizer.json``, where the loaders look for it);
- ``vae_name``: the 16-channel Flux VAE for ``ae.safetensors`` (or a name saying Flux), the SDXL VAE otherwise;
- ``ckpt_name`` naming SD3.5: the large or medium checkpoint (MMDiT + VAE), ``fp8``/``8bit`` names as ComfyUI's
  scaled fp8 file;
- ``lora_name`` in a flow that loads a Flux transformer: a LoRA for the tiny Flux dev in the catalog file's format
  (ComfyUI's for the realism LoRA, diffusers' for alimama's Turbo-Alpha, kohya's otherwise);
- AuraFlow and HunyuanDiT ``ckpt_name``: their tiny all-in-one checkpoints; a PixArt ``unet_name``: a PixArt Sigma
  transformer taking the shared T5;
- a tokenizer the catalog implies (``implied_by``: ``t5_tokenizer/tokenizer.json``, ``llama_tokenizer/...``,
  ``hydit_clip_tokenizer/vocab.txt``) under its ``filename``.

Each file is written under the catalog's ``filename`` only (where an install from the catalog puts it), also when
the graph asks for another name (``animagine_xl`` loads ``animagineXL40_v4Opt.safetensors`` while the catalog
installs ``animagine-xl-4.0-opt.safetensors``): the worker and ``run-flow`` point such inputs at the installed file
(:mod:`visionatrix.models.graph_names`). A model the catalog does not know goes under the graph's name. Files are
built once per cache folder and hard-linked (copied across file systems).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from tests import diffusion_fixtures, dit_flow_files, model_fixtures

CATALOG = Path(__file__).resolve().parents[1] / "visionatrix" / "models" / "models_catalog.json"
"""The bundled models catalog (what ``models install --flow`` uses by default)."""
LORA_RANK = 4
LORA_SEED = 77
_UNET_LORA_TARGETS = re.compile(
    r"model\.diffusion_model\.(.*\.(?:proj_in|proj_out|attn[12]\.(?:to_q|to_k|to_v|to_out\.0)|ff\.net\.0\.proj"
    r"|ff\.net\.2))\.weight$")
_TEXT_LORA_TARGETS = re.compile(r"(text_model\.encoder\.layers\.\d+\.(?:self_attn\.(?:q|k|v|out)_proj|mlp\.fc[12]))"
                                r"\.weight$")
_PLAYGROUND = re.compile(r"(?i)playground|prometheus")
_FLUX_VAE = re.compile(r"(?i)(?:^|[\s/\\])ae\.(?:safetensors|sft)|flux")


def kohya_sdxl_lora(checkpoint: diffusion_fixtures.TinyCheckpoint, *, rank: int = LORA_RANK,
                    seed: int = LORA_SEED) -> dict[str, torch.Tensor]:
    """A kohya-format LoRA for every attention/feed-forward linear of the tiny SDXL ``checkpoint`` and both of its
    text encoders (non-zero ``lora_up``, so it changes outputs)."""
    generator = torch.Generator().manual_seed(seed)
    lora: dict[str, torch.Tensor] = {}

    def add(name: str, weight: torch.Tensor) -> None:
        out_features, in_features = weight.shape[0], weight.shape[1]
        lora[f"{name}.lora_down.weight"] = 0.1 * torch.randn(rank, in_features, generator=generator)
        lora[f"{name}.lora_up.weight"] = 0.1 * torch.randn(out_features, rank, generator=generator)
        lora[f"{name}.alpha"] = torch.tensor(float(rank))

    for key, weight in checkpoint.state_dict.items():
        if (match := _UNET_LORA_TARGETS.match(key)) and weight.ndim == 2:
            add("lora_unet_" + match.group(1).replace(".", "_"), weight)
    for encoder, prefix in (("clip_l", "lora_te1_"), ("clip_g", "lora_te2_")):
        for key, weight in checkpoint.text_encoders[encoder].state_dict().items():
            if match := _TEXT_LORA_TARGETS.match(key):
                add(prefix + match.group(1).replace(".", "_"), weight)
    return {key: value.contiguous() for key, value in lora.items()}


def vae_only(checkpoint: diffusion_fixtures.TinyCheckpoint) -> dict[str, torch.Tensor]:
    """The checkpoint's VAE as a standalone single file (LDM keys, no ``first_stage_model.`` prefix)."""
    prefix = "first_stage_model."
    return {key[len(prefix):]: value for key, value in checkpoint.state_dict.items() if key.startswith(prefix)}


FIXTURE_NAMES = {"sdxl": "sdxl.safetensors", "playground25": "playground25.safetensors",
                 "lora": "sdxl_lora_kohya.safetensors", "vae": "sdxl_vae.safetensors",
                 "upscale_x4": "esrgan_x4.pth", "upscale_x2": "realesrgan_x2.pth"}


def fixture_file(cache_dir: Path, kind: str) -> Path:
    """The tiny model file of ``kind`` (a key of :data:`FIXTURE_NAMES` or :data:`tests.dit_flow_files.FILES`),
    written into ``cache_dir`` once."""
    if kind in dit_flow_files.FILES:
        return dit_flow_files.dit_file(cache_dir, kind)
    path = cache_dir / FIXTURE_NAMES[kind]
    if path.is_file():
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    if kind in ("sdxl", "playground25"):
        _atomic_save(diffusion_fixtures.cached_checkpoint(kind).state_dict, path)
    elif kind == "lora":
        _atomic_save(kohya_sdxl_lora(diffusion_fixtures.cached_checkpoint("sdxl")), path)
    elif kind == "vae":
        _atomic_save(vae_only(diffusion_fixtures.cached_checkpoint("sdxl")), path)
    else:
        upscalers = model_fixtures.write_good_models(cache_dir / "upscalers")
        shutil.copyfile(upscalers[FIXTURE_NAMES[kind]], path)
    return path


def fixture_files(cache_dir: Path) -> dict[str, Path]:
    """Every tiny model file a flow may need, written once into ``cache_dir``: ``{kind: path}``."""
    return {kind: fixture_file(cache_dir, kind) for kind in FIXTURE_NAMES}


def _atomic_save(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    partial = path.with_name(path.name + ".part")
    save_file(dict(tensors), str(partial))
    os.replace(partial, path)


def model_kind(model: Mapping[str, Any], family: str | None = None) -> str:
    """Which fixture file stands for one of ``Flow.info()["models"]``; ``family`` (:func:`flow_family`) decides
    which LoRA a ``lora_name`` gets."""
    names = " ".join(str(model.get(key) or "") for key in ("name", "value", "filename"))
    folder = (model.get("types") or [""])[0]
    input_name = str(model.get("input") or "")
    if model.get("implied_by") and (kind := dit_flow_files.tokenizer_kind(str(model.get("filename") or ""))):
        return kind
    if input_name == "ckpt_name" or folder == "checkpoints":
        return dit_flow_files.checkpoint_kind(names) or ("playground25" if _PLAYGROUND.search(names) else "sdxl")
    if input_name == "unet_name" or folder in ("diffusion_models", "unet"):
        if kind := dit_flow_files.unet_kind(names):
            return kind
    elif input_name.startswith("clip_name") or folder in ("text_encoders", "clip"):
        if kind := dit_flow_files.text_encoder_kind(names):
            return kind
    elif input_name.startswith("lora_name") or folder == "loras":
        return dit_flow_files.flux_lora_kind(names) if family == "flux" else "lora"
    elif input_name == "vae_name" or folder == "vae":
        return "flux_vae" if _FLUX_VAE.search(names) else "vae"
    elif folder == "upscale_models" or input_name == "model_name":
        return "upscale_x2" if re.search(r"(?i)x2", names) else "upscale_x4"
    raise ValueError(f"no tiny model stands for {dict(model)}")


def flow_family(models: Iterable[Mapping[str, Any]]) -> str:
    """``flux`` when a flow loads a Flux transformer, ``sd3`` an SD3.5 checkpoint, ``sdxl`` SDXL ones only (or no
    model), else ``dit`` (AuraFlow, PixArt, HunyuanDiT)."""
    kinds = {model_kind(model) for model in models
             if str(model.get("input") or "").startswith(("unet_name", "ckpt_name"))}
    if any(kind.startswith("flux_") for kind in kinds):
        return "flux"
    if any(kind.startswith("sd35_") for kind in kinds):
        return "sd3"
    return "sdxl" if kinds <= {"sdxl", "playground25"} else "dit"


def model_targets(model: Mapping[str, Any]) -> list[str]:
    """The file name (relative to the model folder) one model is placed under: the catalog's, else the graph's."""
    name = str(model.get("filename") or "") if model.get("in_catalog") else ""
    return [name or str(model.get("value") or "")]


def write_flow_models(models: Iterable[Mapping[str, Any]], models_dir: Path, cache_dir: Path) -> list[Path]:
    """Place a tiny file for each of a flow's ``models`` (``Flow.info()["models"]``) in ``models_dir`` (and T5's
    tokenizer beside a T5 file); the paths."""
    models = list(models)
    family = flow_family(models)
    written: list[Path] = []
    for model in models:
        kind = model_kind(model, family)
        folder = (model.get("types") or [_default_folder(kind)])[0]
        for name in model_targets(model):
            written.append(_place(fixture_file(cache_dir, kind), models_dir / folder / name))
        if kind in ("t5xxl", "t5xxl_fp8"):
            written.append(_place(fixture_file(cache_dir, "t5_tokenizer"),
                                  models_dir / folder / dit_flow_files.TOKENIZER_TARGET))
    return list(dict.fromkeys(written))


def _place(source: Path, target: Path) -> Path:
    """``source`` hard-linked (copied across file systems) at ``target`` unless something is there already."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target


def _default_folder(kind: str) -> str:
    """Where a model of ``kind`` goes when its catalog entry names no folder."""
    if kind.startswith(("flux_lora", "lora")):
        return "loras"
    if kind in ("vae", "flux_vae"):
        return "vae"
    if kind.startswith(("flux_", "pixart")):
        return "diffusion_models"
    if kind.startswith(("clip_", "t5")) or kind.endswith("tokenizer"):
        return "text_encoders"
    return "upscale_models" if kind.startswith("upscale") else "checkpoints"


def corpus_flow_models(flow_path: Path) -> list[dict[str, Any]]:
    """``Flow.info()["models"]`` of a flow file, matched against the bundled models catalog."""
    from visionatrix.flows import load_flow
    from visionatrix.models.catalog import load_catalog_sync

    catalog = load_catalog_sync([str(CATALOG)])
    return list(load_flow(flow_path, {}, models_catalog=catalog.raw).info()["models"])
