"""Loading the transformer families (Flux.1, SD3/SD3.5, AuraFlow, HunyuanDiT, PixArt; :mod:`.families`) through the
model manager: MODEL from a diffusion-model or all-in-one file, CLIP from text-encoder files or an all-in-one file,
and the VAE an all-in-one file carries.

Dtypes are decided here, not by the manager (``cast=False``): on CUDA the transformers and text encoders compute in
bf16 (fp16 on GPUs without bf16; Flux overflows fp16 less than SD1 does, but bf16 is what its authors run), on the
CPU in float32. Weights stay stored in fp8 when the node asks for it (``weight_dtype`` fp8_e4m3fn, fp8_e4m3fn_fast,
fp8_e5m2) or when the file itself stores them in fp8 and the node leaves ``default``; they are cast per layer while
computing. ComfyUI's scaled-fp8 files are dequantized (weight x scale) while loading.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatrix.diffusion.checkpoints import fp8
from visionatrix.diffusion.checkpoints.detect import Family, shapes_of, shapes_of_file
from visionatrix.diffusion.dit import families, sd3_components, t5
from visionatrix.diffusion.model import DiffusionModel
from visionatrix.errors import InvalidInput, ModelFileError
from visionatrix.nodes.state_dicts import SAFETENSORS_SUFFIXES, read_state_dict

if TYPE_CHECKING:
    from torch.nn import Module

    from visionatrix.diffusion.clip import TextEncoder
    from visionatrix.nodes.context import NodeContext

T5_TOKENIZER_FILE = "t5_tokenizer/tokenizer.json"
"""Where the catalog installs T5's tokenizer, inside the text_encoders folder."""


def compute_dtype(ctx: NodeContext) -> Any:
    import torch

    if not ctx.device.startswith("cuda") or not torch.cuda.is_available():
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@functools.lru_cache(maxsize=64)
def _shapes(path: str, _size: int, _mtime: int) -> Mapping[str, tuple[int, ...]]:
    file = Path(path)
    return shapes_of_file(file) if file.suffix.lower() in SAFETENSORS_SUFFIXES else shapes_of(read_state_dict(file))


def file_shapes(path: Path) -> Mapping[str, tuple[int, ...]]:
    """``{key: shape}`` of a model file, read from its header (cached per file version)."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise ModelFileError(path, f"cannot be read: {exc.strerror or exc}") from exc
    return _shapes(str(path), stat.st_size, stat.st_mtime_ns)


Detected = tuple[families.FamilySpec, Any]
"""A transformer file's family spec and the detector's info about it."""


def detect(shapes: Mapping[str, Sequence[int]], path: object) -> Detected | None:
    """The transformer family a file holds (None: none of Flux, SD3, AuraFlow, HunyuanDiT, PixArt)."""
    return families.detect(shapes, path)


def load_transformer(ctx: NodeContext, path: Path, detected: Detected, *, weight_dtype: str = "default",
                     ) -> DiffusionModel:
    """The file's transformer as MODEL (``weight_dtype``: UNETLoader's choice of storage)."""
    from visionatrix.diffusion.loading import manager_of

    spec, info = detected
    storage = fp8.weight_dtype_of(weight_dtype)
    compute = compute_dtype(ctx)
    prefix = info.prefix

    def build(state_dict: dict[str, Any]) -> Module:
        stored_fp8 = _kept_fp8(state_dict)
        module = spec.build(_dequantized(state_dict, compute, path), info, path)
        return _stored(module, storage or stored_fp8, compute)

    module = manager_of(ctx).load(path, build, kind=f"{spec.family}_transformer", dtype=f"{weight_dtype}:{compute}",
                                  cast=False, prefixes=(prefix,) if prefix else None)
    return DiffusionModel(unet=module, family=spec.family, in_channels=spec.in_channels(info),
                          model_sampling=spec.sampling(info), latent_format=spec.latent_format(info), name=path.name)


def flux_mu(width: int, height: int, base_shift: float = 0.5, max_shift: float = 1.15) -> float:
    """ModelSamplingFlux's shift for an image size: linear in the number of packed tokens (one per 16 x 16 pixels),
    ``base_shift`` at 256 tokens (256²) and ``max_shift`` at 4096 (1024²)."""
    tokens = width * height / (8 * 8 * 2 * 2)
    slope = (max_shift - base_shift) / (4096 - 256)
    return tokens * slope + (base_shift - slope * 256)


def _kept_fp8(state_dict: Mapping[str, Any]) -> Any:
    """The fp8 dtype to keep a plain fp8 file's weights in (as the file stores them); None for other files and for
    scaled-fp8 files, whose per-layer scales do not survive plain fp8 storage: those stay in the compute dtype."""
    return None if fp8.is_scaled_fp8(state_dict) else fp8.fp8_dtype_of(state_dict)


def _dequantized(state_dict: dict[str, Any], compute: Any, path: Path) -> dict[str, Any]:
    if fp8.is_scaled_fp8(state_dict):
        return fp8.dequantize_scaled_fp8(state_dict, dtype=compute, path=path)
    return state_dict


def _stored(module: Module, storage: Any, compute: Any) -> Module:
    if storage is not None:
        fp8.store_in_fp8(module, storage_dtype=storage, compute_dtype=compute)
    else:
        module.to(dtype=compute)
        module.vix_compute_dtype = compute
    return module


def load_components(ctx: NodeContext, path: Path, detected: Detected) -> tuple[TextEncoder | None, Any]:
    """CLIP and VAE of an all-in-one file (None for the parts it lacks)."""
    from visionatrix.diffusion.clip import TextEncoder
    from visionatrix.diffusion.loading import dtypes, manager_of
    from visionatrix.diffusion.text.embeddings import embedding_lookup
    from visionatrix.diffusion.vae import Vae

    spec, info = detected
    manager = manager_of(ctx)
    compute = compute_dtype(ctx)
    encoders: dict[str, Module] = {}
    for name, builder in spec.text_builders.items():
        prefix = info.components.get(name)
        if prefix is None:
            continue

        def build(state_dict: dict[str, Any], prefix: str = prefix, builder: Callable[..., Module] = builder,
                  ) -> Module:
            raw = {k[len(prefix):]: v for k, v in state_dict.items()}
            return _stored(builder(_dequantized(raw, compute, path), path), _kept_fp8(raw), compute)

        encoders[name] = manager.load(path, build, kind=f"{spec.family}_{name}", dtype=str(compute), cast=False,
                                      prefixes=(prefix,))
    clip = None
    if encoders:
        clip = TextEncoder(encoders=encoders, family=spec.family, embeddings=embedding_lookup(ctx), use=manager.use,
                           tokenizers=_tokenizers(ctx, encoders, path, info),
                           offload=getattr(manager, "offload", None))
    vae = None
    prefix = info.components.get("vae")
    if prefix is not None:

        def build_vae(state_dict: dict[str, Any]) -> Module:
            return sd3_components.build_vae({k[len(prefix):]: v for k, v in state_dict.items()}, path)

        vae = Vae(manager.load(path, build_vae, kind=f"{spec.family}_vae", dtype=dtypes(ctx)[1], prefixes=(prefix,)),
                  name=path.name)
    return clip, vae


TEXT_BUILDERS: dict[str, Callable[..., Any]] = {
    "clip_l": sd3_components.build_clip_l, "clip_g": sd3_components.build_clip_g, "t5xxl": t5.build_t5}
TOKENIZER_FILES = {"t5xxl": T5_TOKENIZER_FILE, "pile_t5xl": "llama_tokenizer/tokenizer.json",
                   "hydit_clip": "hydit_clip_tokenizer/vocab.txt"}
"""Where the catalog installs each text encoder's tokenizer, inside the text_encoders folder."""


def _tokenizers(ctx: NodeContext, encoders: Mapping[str, Any], path: Path | None = None, info: Any = None,
                ) -> dict[str, Any]:
    """The tokenizers of ``encoders`` that are installed (encoding names the catalog entry of a missing one);
    HunyuanDiT's mT5 tokenizer comes from the SentencePiece model its file carries."""
    from visionatrix.diffusion.text import hunyuan_tokenizers, llama_tokenizer, t5_tokenizer

    loaders = {"t5xxl": t5_tokenizer.t5_tokenizer, "pile_t5xl": llama_tokenizer.llama_tokenizer,
               "hydit_clip": hunyuan_tokenizers.bert_tokenizer}
    folders = ctx.model_folders
    found: dict[str, Any] = {}
    for name in encoders:
        if name in TOKENIZER_FILES and folders is not None:
            location = folders.find("text_encoders", TOKENIZER_FILES[name])
            if location is not None:
                found[name] = loaders[name](location)
    spiece = None if info is None else info.components.get("mt5xl_spiece")
    if "mt5xl" in encoders and spiece is not None and path is not None:
        data = read_state_dict(path, (spiece + "spiece_model",))[spiece + "spiece_model"]
        found["mt5xl"] = hunyuan_tokenizers.mt5_tokenizer_from_spiece(data, path)
    return found


CLIP_TYPES = {"sd3": Family.SD3, "flux": Family.FLUX, "pixart": Family.PIXART}


def load_text_encoders(ctx: NodeContext, paths: Sequence[tuple[str, Path]], clip_type: str) -> TextEncoder:
    """CLIP of a family from text-encoder files (``paths``: (input name, file)); each file's kind comes from its
    contents: T5 by its encoder blocks, CLIP-G as the deeper (then wider) of two CLIPs or one 1280 wide or 24+
    layers deep, else CLIP-L."""
    from visionatrix.diffusion.clip import TextEncoder
    from visionatrix.diffusion.loading import manager_of
    from visionatrix.diffusion.text.embeddings import embedding_lookup

    family = CLIP_TYPES[clip_type]
    kinds = _kinds(paths)
    if family is Family.FLUX and sorted(kinds.values()) != ["clip_l", "t5xxl"]:
        raise InvalidInput("type", f"type flux takes one CLIP-L and one T5-XXL file; got "
                                   f"{', '.join(f'{n}: {k}' for n, k in kinds.items())}")
    if family is Family.PIXART and list(kinds.values()) != ["t5xxl"]:
        raise InvalidInput("type", f"type pixart takes a T5-XXL file; got {', '.join(kinds.values())}")
    manager = manager_of(ctx)
    compute = compute_dtype(ctx)
    encoders: dict[str, Module] = {}
    for input_name, path in paths:
        name = kinds[input_name]
        if name in encoders:
            raise InvalidInput(input_name, f"two {name} files were given; each text encoder once")
        prefix = _text_prefix(name, file_shapes(path), path)

        def build(state_dict: dict[str, Any], prefix: str = prefix, name: str = name, path: Path = path) -> Module:
            raw = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
            return _stored(TEXT_BUILDERS[name](_dequantized(raw, compute, path), path), _kept_fp8(raw), compute)

        encoders[name] = manager.load(path, build, kind=f"text_encoder_{name}", dtype=str(compute), cast=False)
    return TextEncoder(encoders=encoders, family=family, embeddings=embedding_lookup(ctx), use=manager.use,
                       tokenizers=_tokenizers(ctx, encoders), offload=getattr(manager, "offload", None))


CLIP_PREFIXES = ("", "text_encoders.clip_l.transformer.", "text_encoders.clip_g.transformer.",
                 "cond_stage_model.transformer.", "conditioner.embedders.1.model.")


def _text_prefix(name: str, shapes: Mapping[str, Any], path: Path) -> str:
    if name == "t5xxl":
        return ""  # build_t5 finds T5's own prefix
    for prefix in CLIP_PREFIXES:
        if prefix + "text_model.embeddings.token_embedding.weight" in shapes:
            return prefix
    raise ModelFileError(path, "not a CLIP text encoder in transformers' layout (text_model.embeddings."
                               "token_embedding.weight)")


def _kinds(paths: Sequence[tuple[str, Path]]) -> dict[str, str]:
    kinds: dict[str, str] = {}
    clips: dict[str, tuple[int, int]] = {}
    for input_name, path in paths:
        shapes = file_shapes(path)
        if any(key.endswith(t5.MARKER) for key in shapes):
            kinds[input_name] = "t5xxl"
            continue
        prefix = next((p for p in CLIP_PREFIXES if p + "text_model.embeddings.token_embedding.weight" in shapes), None)
        if prefix is None:
            raise InvalidInput(input_name, f"{path.name} is neither a T5 nor a CLIP text encoder (found "
                                           f"{len(shapes)} tensors, e.g. {', '.join(sorted(shapes)[:2])})")
        width = int(shapes[prefix + "text_model.embeddings.token_embedding.weight"][1])
        layers = sum(1 for key in shapes if key.startswith(prefix + "text_model.encoder.layers.")
                     and key.endswith(".mlp.fc1.weight"))
        clips[input_name] = (layers, width)
    if len(clips) == 2:
        deeper = max(clips, key=lambda name: clips[name])
        kinds.update({name: "clip_g" if name == deeper else "clip_l" for name in clips})
    else:
        for name, (layers, width) in clips.items():
            kinds[name] = "clip_g" if width >= 1280 or layers >= 24 else "clip_l"
    return kinds

