"""UNETLoader, DualCLIPLoader and TripleCLIPLoader: diffusion-model files (Flux.1, SD3/SD3.5) and the text-encoder
files beside them (CLIP-L, CLIP-G, T5-XXL in fp16, fp8 or ComfyUI's scaled fp8), through the worker's model manager
(see :mod:`visionatrix.diffusion.dit.loading`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from visionatrix.diffusion import loading
from visionatrix.diffusion.checkpoints import fp8
from visionatrix.diffusion.dit import loading as dit_loading
from visionatrix.errors import InvalidInput, ModelFileError
from visionatrix.nodes import context
from visionatrix.nodes.model_files import files_of, path_of, version_of

DIFFUSION_MODELS = "diffusion_models"
TEXT_ENCODERS = "text_encoders"
WEIGHT_DTYPES = ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]
DUAL_TYPES = ["sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image", "hunyuan_video_15",
              "kandinsky5", "kandinsky5_image"]
"""ComfyUI's DualCLIPLoader types (so its graphs validate); this release runs sdxl, sd3 and flux."""
DEVICE = {"optional": {"device": (["default", "cpu"], {"advanced": True})}}


def load_diffusion_model(path: Path, weight_dtype: str = "default") -> Any:
    """MODEL from a diffusion-model file: a Flux.1, SD3/SD3.5, AuraFlow, HunyuanDiT or PixArt transformer (alone or
    all-in-one)."""
    ctx = context.current()
    detected = dit_loading.detect(dit_loading.file_shapes(path), path)
    if detected is None:
        raise ModelFileError(path, "not a diffusion model this release loads from diffusion_models (Flux.1 dev, "
                                   "schnell, Kontext, Fill; SD3/SD3.5; AuraFlow; HunyuanDiT; PixArt); SD1/SDXL files "
                                   "go in checkpoints and load with CheckpointLoaderSimple")
    return dit_loading.load_transformer(ctx, path, detected, weight_dtype=weight_dtype)


class UNETLoader:
    DESCRIPTION = ("Loads a diffusion model file (Flux.1 dev/schnell/Kontext/Fill, SD3/SD3.5, AuraFlow, HunyuanDiT, "
                   "PixArt) from diffusion_models; "
                   "weight_dtype fp8 keeps the weights in 8 bits and computes in bf16 (float32 on the CPU).")
    CATEGORY = "advanced/loaders"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_unet"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"unet_name": (files_of(DIFFUSION_MODELS),), "weight_dtype": (WEIGHT_DTYPES,)}}

    @classmethod
    def IS_CHANGED(cls, unet_name: Any, weight_dtype: Any = None) -> str | float:
        return version_of(DIFFUSION_MODELS, unet_name, "unet_name")

    def load_unet(self, unet_name: str, weight_dtype: str = "default") -> tuple[Any]:
        fp8.weight_dtype_of(str(weight_dtype))  # an unknown name is an error naming the input
        return (load_diffusion_model(path_of(DIFFUSION_MODELS, unet_name, "unet_name"), str(weight_dtype)),)


def load_clip_files(names: dict[str, Any], clip_type: str) -> Any:
    """CLIP of ``clip_type`` from the text-encoder files named by the inputs in ``names``."""
    ctx = context.current()
    paths = [(input_name, path_of(TEXT_ENCODERS, value, input_name)) for input_name, value in names.items()]
    if clip_type == "sdxl":
        encoders = [loading.load_text_encoder_file(ctx, path) for _, path in paths]
        return _sdxl_pair(encoders)
    if clip_type not in dit_loading.CLIP_TYPES:
        raise InvalidInput("type", f"text encoders of type {clip_type!r} are not supported yet; this release loads "
                                   "sdxl, sd3, flux and pixart")
    return dit_loading.load_text_encoders(ctx, paths, clip_type)


def _sdxl_pair(encoders: list[Any]) -> Any:
    import dataclasses

    from visionatrix.diffusion.checkpoints.detect import Family

    merged: dict[str, Any] = {}
    for encoder in encoders:
        merged.update(encoder.encoders)
    if set(merged) != {"clip_l", "clip_g"}:
        raise InvalidInput("type", f"type sdxl takes a CLIP-L and an OpenCLIP bigG file; got {', '.join(merged)}")
    return dataclasses.replace(encoders[0], encoders=merged, family=Family.SDXL)


class DualCLIPLoader:
    DESCRIPTION = ("Loads two text encoder files: sdxl (CLIP-L + CLIP-G), sd3 (two of CLIP-L, CLIP-G, T5-XXL), "
                   "flux (CLIP-L + T5-XXL); the kind of each file is read from its contents.")
    CATEGORY = "advanced/loaders"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        files = (files_of(TEXT_ENCODERS),)
        return {"required": {"clip_name1": files, "clip_name2": files, "type": (DUAL_TYPES,)}, **DEVICE}

    @classmethod
    def IS_CHANGED(cls, clip_name1: Any, clip_name2: Any, type: Any = None, device: Any = None) -> str:
        return ";".join(str(version_of(TEXT_ENCODERS, name, key))
                        for key, name in (("clip_name1", clip_name1), ("clip_name2", clip_name2)))

    def load_clip(self, clip_name1: str, clip_name2: str, type: str, device: str = "default") -> tuple[Any]:
        return (load_clip_files({"clip_name1": clip_name1, "clip_name2": clip_name2}, str(type)),)


class TripleCLIPLoader:
    DESCRIPTION = "Loads CLIP-L, CLIP-G and T5-XXL text encoder files for SD3/SD3.5 (any order)."
    CATEGORY = "advanced/loaders"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        files = (files_of(TEXT_ENCODERS),)
        return {"required": {"clip_name1": files, "clip_name2": files, "clip_name3": files}}

    @classmethod
    def IS_CHANGED(cls, clip_name1: Any, clip_name2: Any, clip_name3: Any) -> str:
        return ";".join(str(version_of(TEXT_ENCODERS, name, key)) for key, name in
                        (("clip_name1", clip_name1), ("clip_name2", clip_name2), ("clip_name3", clip_name3)))

    def load_clip(self, clip_name1: str, clip_name2: str, clip_name3: str) -> tuple[Any]:
        return (load_clip_files({"clip_name1": clip_name1, "clip_name2": clip_name2, "clip_name3": clip_name3},
                                "sd3"),)


NODE_CLASS_MAPPINGS = {"UNETLoader": UNETLoader, "DualCLIPLoader": DualCLIPLoader,
                       "TripleCLIPLoader": TripleCLIPLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"UNETLoader": "Load Diffusion Model"}
