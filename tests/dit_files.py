"""Tiny Flux.1 and SD3/SD3.5 model-file sets in the layouts users download, for node and flow tests.

One set shares its text encoders and VAE so that every file fits every other, as the real ones do:

- ``flux1-{dev,schnell,fill}`` transformers in Black Forest Labs' layout (``diffusion_models``), ``flux1-dev`` also
  as ComfyUI's all-in-one file (``checkpoints``: ``model.diffusion_model.``, ``text_encoders.clip_l.transformer.``,
  ``text_encoders.t5xxl.transformer.``, ``vae.``);
- SD3.5 large / medium transformers (MMDiT layout) alone and all-in-one (``sd3_fixtures``);
- ``clip_l.safetensors`` (transformers' layout with ComfyUI's identity text projection), ``clip_g.safetensors``
  (transformers' layout with projection), ``t5xxl_fp16.safetensors`` and ``t5xxl_fp8_e4m3fn.safetensors`` (the same
  T5 stored in fp8), the 16-channel VAE ``ae.safetensors`` (LDM layout without quant convs) and T5's tokenizer at
  ``text_encoders/t5_tokenizer/tokenizer.json`` (where the catalog installs it).

Modules are kept (:class:`FileSet`) so tests compute references from the library modules directly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from tests import flux_fixtures, sd3_fixtures
from tests.diffusion_fixtures import CLIP_L, OPEN_CLIP_G, _clip_text_model, _perturbed, vae_to_ldm

SEED = 2028
FLUX_TINY: dict[str, Any] = {**flux_fixtures.TINY, "joint_attention_dim": sd3_fixtures.T5_DIMS["d_model"],
                             "pooled_projection_dim": CLIP_L["hidden_size"]}
"""Flux transformers that take the shared tiny T5 (tokens) and CLIP-L (pooled)."""


@dataclass
class FileSet:
    clip_l: torch.nn.Module
    clip_g: torch.nn.Module
    t5: torch.nn.Module
    vae: torch.nn.Module
    flux: dict[str, torch.nn.Module] = field(default_factory=dict)
    sd3: dict[str, torch.nn.Module] = field(default_factory=dict)


@functools.cache
def modules() -> FileSet:
    """The shared tiny modules (built once per process; treat as read-only)."""
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    generator = torch.Generator().manual_seed(SEED)
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        clip_l = _perturbed(_clip_text_model(CLIP_L, projection=False), generator).eval()
        clip_g = _perturbed(_clip_text_model(OPEN_CLIP_G, projection=True), generator).eval()
        vae = _perturbed(AutoencoderKL(**{**sd3_fixtures.VAE16, "scaling_factor": 0.3611, "shift_factor": 0.1159}),
                         generator).eval()
        files = FileSet(clip_l=clip_l, clip_g=clip_g, t5=sd3_fixtures.build_t5(seed=SEED + 1), vae=vae)
        for variant in ("dev", "schnell", "fill"):
            torch.manual_seed(SEED + 2)
            model = FluxTransformer2DModel(**{**FLUX_TINY, **flux_fixtures.VARIANTS[variant]})
            files.flux[variant] = _perturbed(model, generator).eval()
    for kind in ("sd35_large", "sd35_medium"):
        files.sd3[kind] = sd3_fixtures.cached_checkpoint(kind).transformer
    return files


def clip_l_weights(files: FileSet) -> dict[str, torch.Tensor]:
    state = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in files.clip_l.state_dict().items()}
    state["text_projection.weight"] = torch.eye(CLIP_L["hidden_size"])
    return _clean(state)


def vae_weights(files: FileSet) -> dict[str, torch.Tensor]:
    return _clean(vae_to_ldm(files.vae.state_dict()))


def write_text_encoders(models_dir: Path) -> dict[str, Path]:
    """CLIP-L, CLIP-G, T5 (fp16 and fp8) and T5's tokenizer into ``models_dir/text_encoders``."""
    files = modules()
    folder = models_dir / "text_encoders"
    t5 = sd3_fixtures.t5_file_weights(files.t5)
    written = {
        "clip_l": _save(clip_l_weights(files), folder / "clip_l.safetensors"),
        "clip_g": _save(_clean(files.clip_g.state_dict()), folder / "clip_g.safetensors"),
        "t5xxl": _save(t5, folder / "t5xxl_fp16.safetensors"),
        "t5xxl_fp8": _save({k: v.to(torch.float8_e4m3fn) if v.ndim == 2 and "relative_attention" not in k else v
                            for k, v in t5.items()}, folder / "t5xxl_fp8_e4m3fn.safetensors"),
    }
    written["tokenizer"] = sd3_fixtures.write_tokenizer(folder / "t5_tokenizer")
    return written


def write_vae(models_dir: Path, name: str = "ae.safetensors") -> Path:
    return _save(vae_weights(modules()), models_dir / "vae" / name)


def flux_weights(variant: str, prefix: str = "") -> dict[str, torch.Tensor]:
    return flux_fixtures.diffusers_to_bfl(modules().flux[variant].state_dict(), prefix)


def write_flux(models_dir: Path, variant: str, name: str | None = None) -> Path:
    """The tiny Flux ``variant`` transformer in ``diffusion_models`` (BFL layout)."""
    return _save(flux_weights(variant), models_dir / "diffusion_models" / (name or f"flux1-{variant}.safetensors"))


def write_flux_all_in_one(models_dir: Path, name: str = "flux1-dev-aio.safetensors") -> Path:
    """ComfyUI's all-in-one Flux dev checkpoint: transformer, CLIP-L, T5 and VAE in one file."""
    files = modules()
    state = flux_weights("dev", "model.diffusion_model.")
    state |= {"text_encoders.clip_l.transformer." + k: v for k, v in clip_l_weights(files).items()}
    state |= {"text_encoders.t5xxl.transformer." + k: v for k, v in sd3_fixtures.t5_file_weights(files.t5).items()}
    state |= {"vae." + k: v for k, v in vae_weights(files).items()}
    return _save(state, models_dir / "checkpoints" / name)


def sd3_weights(kind: str) -> dict[str, torch.Tensor]:
    return sd3_fixtures.cached_checkpoint(kind).state_dict


def write_sd3_checkpoint(models_dir: Path, kind: str, name: str) -> Path:
    """An SD3.5 checkpoint as Stability publishes it: the transformer (``model.diffusion_model.``) and the VAE
    (``first_stage_model.``), the text encoders in their own files."""
    state = {"model.diffusion_model." + k: v for k, v in sd3_weights(kind).items()}
    state |= {"first_stage_model." + k: v for k, v in vae_to_ldm(_sd3_vae().state_dict()).items()}
    return _save(_clean(state), models_dir / "checkpoints" / name)


@functools.cache
def _sd3_vae() -> torch.nn.Module:
    from diffusers import AutoencoderKL

    with torch.random.fork_rng():
        torch.manual_seed(SEED + 3)
        return _perturbed(AutoencoderKL(**sd3_fixtures.VAE16), torch.Generator().manual_seed(SEED + 3)).eval()


def _clean(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().clone() for k, v in state.items() if not k.endswith("position_ids")}


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path
