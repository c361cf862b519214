"""The tiny Flux.1 / SD3.5 model files a flow may load, by kind, written once into a cache folder
(:mod:`tests.flow_models` places them under the catalog's names).

All come from one :mod:`tests.dit_files` set, so every file fits every other as the real ones do:

- ``flux_dev`` / ``flux_schnell`` / ``flux_fill``: the transformers in Black Forest Labs' layout (``unet_name``; a
  Kontext file is Flux dev weights, as the real one has the dev architecture);
- ``clip_l``, ``clip_g``, ``t5xxl`` (fp16 file), ``t5xxl_fp8`` (the same T5 stored in ``float8_e4m3fn``) and T5's
  ``t5_tokenizer`` (``tokenizer.json``, placed at ``text_encoders/t5_tokenizer/`` beside any T5 file);
- ``flux_vae``: the 16-channel ``ae.safetensors`` (LDM layout without quant convs);
- ``sd35_large`` / ``sd35_medium``: SD3.5 checkpoints as Stability publishes them (MMDiT + VAE, text encoders apart);
  ``sd35_large_fp8``: the large one as ComfyUI's scaled fp8 file (:mod:`tests.scaled_fp8_files`);
- ``auraflow`` / ``hunyuan_dit``: the tiny all-in-one checkpoints of :mod:`tests.auraflow_fixtures` and
  :mod:`tests.hunyuan_fixtures` (their own text encoders and VAE), with their tokenizers ``llama_tokenizer``
  (``tokenizer.json``) and ``hydit_clip_tokenizer`` (BERT's ``vocab.txt``);
- ``pixart_sigma``: a PixArt Sigma transformer in PixArt's layout that takes the shared T5's tokens (its VAE is the
  SDXL one);
- Flux LoRAs for the tiny Flux dev, in the formats the catalog's files use: ``flux_lora_kohya``
  (``lora_unet_<BFL path>``), ``flux_lora_comfy`` (``diffusion_model.<BFL path>``, as ComfyUI's converted XLabs
  realism LoRA) and ``flux_lora_diffusers`` (``transformer.<diffusers path>.lora_A/B``, as alimama's Turbo-Alpha).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

FILES: dict[str, str] = {
    "flux_dev": "flux1-dev.safetensors", "flux_schnell": "flux1-schnell.safetensors",
    "flux_fill": "flux1-fill.safetensors", "clip_l": "clip_l.safetensors", "clip_g": "clip_g.safetensors",
    "t5xxl": "t5xxl_fp16.safetensors", "t5xxl_fp8": "t5xxl_fp8_e4m3fn.safetensors",
    "t5_tokenizer": "t5_tokenizer/tokenizer.json", "flux_vae": "ae.safetensors",
    "sd35_large": "sd3.5_large.safetensors", "sd35_medium": "sd3.5_medium.safetensors",
    "sd35_large_fp8": "sd3.5_large_fp8_scaled.safetensors", "flux_lora_kohya": "flux_lora_kohya.safetensors",
    "flux_lora_comfy": "flux_lora_comfy.safetensors", "flux_lora_diffusers": "flux_lora_diffusers.safetensors",
    "auraflow": "aura_flow_0.3.safetensors", "llama_tokenizer": "llama_tokenizer/tokenizer.json",
    "hunyuan_dit": "hunyuan_dit_1.2.safetensors", "hydit_clip_tokenizer": "hydit_clip_tokenizer/vocab.txt",
    "pixart_sigma": "pixart_sigma.safetensors",
}
"""Kind -> its file name in the cache folder (``<cache>/dit/``)."""
TOKENIZER_TARGET = "t5_tokenizer/tokenizer.json"
"""Where T5's tokenizer goes inside ``text_encoders`` (where the loaders look for it)."""
LORA_SEED = 78

_UNET = re.compile(r"(?i)fill|schnell|kontext|flux")
_TOKENIZERS = {"t5_tokenizer/": "t5_tokenizer", "llama_tokenizer/": "llama_tokenizer",
               "hydit_clip_tokenizer/": "hydit_clip_tokenizer"}
_TEXT = (("t5xxl_fp8", re.compile(r"(?i)t5.*fp8|fp8.*t5")), ("t5xxl", re.compile(r"(?i)t5")),
         ("clip_g", re.compile(r"(?i)clip[_-]?g")), ("clip_l", re.compile(r"(?i)clip[_-]?l")))


def tokenizer_kind(file_name: str) -> str | None:
    """The tokenizer an implied catalog model installs (by its ``filename``: ``t5_tokenizer/tokenizer.json``, ...)."""
    return next((kind for folder, kind in _TOKENIZERS.items() if file_name.startswith(folder)), None)


def unet_kind(names: str) -> str | None:
    """The transformer a ``unet_name`` model stands for: PixArt, or Flux (fill / schnell / dev, Kontext = dev);
    None when the names say neither."""
    if re.search(r"(?i)pixart", names):
        return "pixart_sigma"
    if not _UNET.search(names):
        return None
    lowered = names.lower()
    return "flux_fill" if "fill" in lowered else "flux_schnell" if "schnell" in lowered else "flux_dev"


def text_encoder_kind(names: str) -> str | None:
    """``clip_l`` / ``clip_g`` / ``t5xxl`` / ``t5xxl_fp8`` by a ``clip_name`` model's names; None if none fits."""
    return next((kind for kind, pattern in _TEXT if pattern.search(names)), None)


def checkpoint_kind(names: str) -> str | None:
    """The SD3.5, AuraFlow or HunyuanDiT checkpoint a ``ckpt_name`` model stands for; None when the names say none
    of these."""
    lowered = names.lower()
    if re.search(r"aura_?flow", lowered):
        return "auraflow"
    if "hunyuan" in lowered:
        return "hunyuan_dit"
    if not re.search(r"sd3[._]5", lowered):
        return None
    if "medium" in lowered:
        return "sd35_medium"
    return "sd35_large_fp8" if "fp8" in lowered or "8bit" in lowered else "sd35_large"


def flux_lora_kind(names: str) -> str:
    """The format a Flux LoRA's catalog file has: ComfyUI's (the converted realism LoRA), diffusers' (alimama's
    Turbo-Alpha), else kohya's."""
    if re.search(r"(?i)realism", names):
        return "flux_lora_comfy"
    if re.search(r"(?i)alimama|turbo", names):
        return "flux_lora_diffusers"
    return "flux_lora_kohya"


def dit_file(cache_dir: Path, kind: str) -> Path:
    """The tiny file of ``kind`` (a key of :data:`FILES`) in ``cache_dir/dit``, written once."""
    folder = cache_dir / "dit"
    path = folder / FILES[kind]
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    if kind in ("clip_l", "clip_g", "t5xxl", "t5xxl_fp8", "t5_tokenizer"):
        _write_text_encoders(folder)
    elif kind in ("llama_tokenizer", "hydit_clip_tokenizer"):
        _write_tokenizer(kind, path)
    else:
        _atomic_save(_weights(kind), path)
    return path


def _write_text_encoders(folder: Path) -> None:
    from tests import dit_files

    scratch = folder / f".text-{os.getpid()}"
    written = dit_files.write_text_encoders(scratch)
    for kind, source in written.items():
        target = folder / FILES["t5_tokenizer" if kind == "tokenizer" else kind]
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
    shutil.rmtree(scratch, ignore_errors=True)


def _write_tokenizer(kind: str, path: Path) -> None:
    from tests import auraflow_fixtures, hunyuan_fixtures

    scratch = path.parent.with_name(f".{path.parent.name}-{os.getpid()}")
    writer = auraflow_fixtures.write_tokenizer if kind == "llama_tokenizer" else hunyuan_fixtures.write_bert_vocab
    written = writer(scratch)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(written, path)
    shutil.rmtree(scratch, ignore_errors=True)


def pixart_weights() -> dict[str, torch.Tensor]:
    """A tiny PixArt Sigma taking the shared tiny T5's tokens, in PixArt's own layout."""
    from diffusers import PixArtTransformer2DModel

    from tests import dit_files, pixart_fixtures, sd3_fixtures

    width = sd3_fixtures.T5_DIMS["d_model"]
    config = {**pixart_fixtures.KINDS["sigma"], "caption_channels": width}
    with torch.random.fork_rng():
        torch.manual_seed(dit_files.SEED + 5)
        model = PixArtTransformer2DModel(**config)
    model = dit_files._perturbed(model, torch.Generator().manual_seed(dit_files.SEED + 5)).eval()
    return pixart_fixtures.pixart_from_diffusers(model.state_dict(), token_num=pixart_fixtures.TOKEN_NUM["sigma"],
                                                 caption_channels=width)


def _weights(kind: str) -> dict[str, torch.Tensor]:
    from tests import dit_files, dit_lora_fixtures, scaled_fp8_files

    if kind in ("flux_dev", "flux_schnell", "flux_fill"):
        return dit_files.flux_weights(kind.removeprefix("flux_"))
    if kind == "flux_vae":
        return dit_files.vae_weights(dit_files.modules())
    if kind in ("sd35_large", "sd35_medium", "sd35_large_fp8"):
        source = "sd35_medium" if kind == "sd35_medium" else "sd35_large"
        scratch = Path(os.environ.get("TMPDIR", "/tmp")) / f"vix-sd3-{os.getpid()}-{source}"
        path = dit_files.write_sd3_checkpoint(scratch, source, FILES[source])
        state = load_file(str(path))
        shutil.rmtree(scratch, ignore_errors=True)
        return scaled_fp8_files.scaled_fp8(state) if kind == "sd35_large_fp8" else state
    if kind == "auraflow":
        from tests import auraflow_fixtures

        return dict(auraflow_fixtures.cached_checkpoint(all_in_one=True).state_dict)
    if kind == "hunyuan_dit":
        from tests import hunyuan_fixtures

        return dict(hunyuan_fixtures.cached_checkpoint("v1.2").state_dict)
    if kind == "pixart_sigma":
        return pixart_weights()
    bfl = dit_files.flux_weights("dev")
    if kind == "flux_lora_kohya":
        return dit_lora_fixtures.original_lora(bfl, "kohya", seed=LORA_SEED)
    if kind == "flux_lora_comfy":
        return dit_lora_fixtures.original_lora(bfl, "comfy", seed=LORA_SEED + 1)
    if kind == "flux_lora_diffusers":
        return dit_lora_fixtures.diffusers_lora(dit_files.modules().flux["dev"], seed=LORA_SEED + 2)
    raise ValueError(f"no tiny DiT file of kind {kind!r}")


def _atomic_save(tensors: Mapping[str, torch.Tensor], path: Path) -> None:
    partial = path.with_name(path.name + ".part")
    save_file({key: value.contiguous() for key, value in tensors.items()}, str(partial))
    os.replace(partial, path)
