"""CheckpointLoaderSimple, CLIPLoader and CLIPSetLastLayer: single-file SD1.x/SD2.x/SDXL checkpoints and text
encoders, through the worker's model manager (see :mod:`visionatrix.diffusion.loading`)."""

from __future__ import annotations

import logging
from typing import Any

from visionatrix.diffusion import loading
from visionatrix.diffusion.clip import TextEncoder
from visionatrix.diffusion.dit import loading as dit_loading
from visionatrix.errors import InvalidInput
from visionatrix.nodes import context
from visionatrix.nodes.model_files import files_of, path_of, version_of

log = logging.getLogger(__name__)
CLIP_TYPES = ["stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv", "pixart", "cosmos",
              "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2", "qwen_image", "hunyuan_image", "flux",
              "hunyuan_dit"]
"""ComfyUI's CLIPLoader types (so its graphs validate); this release runs ``stable_diffusion``, ``sd3`` and
``pixart``."""


class CheckpointLoaderSimple:
    DESCRIPTION = ("Loads a single-file checkpoint (SD1.x, SD2.x incl. v-prediction, SDXL base and refiner, "
                   "inpainting, Playground 2.5; all-in-one SD3/SD3.5, Flux.1, AuraFlow, HunyuanDiT): the diffusion "
                   "model, its text encoders and its VAE.")
    CATEGORY = "loaders"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    OUTPUT_TOOLTIPS = ("The model used for denoising latents.", "The CLIP model used for encoding text prompts.",
                       "The VAE model used for encoding and decoding images to and from latent space.")
    FUNCTION = "load_checkpoint"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"ckpt_name": (files_of("checkpoints"), {"tooltip": "The checkpoint to load."})}}

    @classmethod
    def IS_CHANGED(cls, ckpt_name: Any) -> str | float:
        return version_of("checkpoints", ckpt_name, "ckpt_name")

    def load_checkpoint(self, ckpt_name: str) -> tuple[Any, Any, Any]:
        ctx = context.current()
        path = path_of("checkpoints", ckpt_name, "ckpt_name")
        transformer = dit_loading.detect(dit_loading.file_shapes(path), path)
        if transformer is not None:  # an all-in-one SD3/SD3.5, Flux, AuraFlow or HunyuanDiT file
            clip, vae = dit_loading.load_components(ctx, path, transformer)
            return dit_loading.load_transformer(ctx, path, transformer), clip, vae
        info = loading.checkpoint_info(path)
        model = loading.load_unet(ctx, path, info)
        return model, loading.load_text_encoder(ctx, path, info), loading.load_vae(ctx, path, info)


class CLIPLoader:
    DESCRIPTION = "Loads a text encoder file from the text_encoders folder (stable_diffusion: CLIP-L or OpenCLIP)."
    CATEGORY = "advanced/loaders"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"clip_name": (files_of("text_encoders"),), "type": (CLIP_TYPES,)},
                "optional": {"device": (["default", "cpu"], {"advanced": True})}}

    @classmethod
    def IS_CHANGED(cls, clip_name: Any, type: Any = None, device: Any = None) -> str | float:
        return version_of("text_encoders", clip_name, "clip_name")

    def load_clip(self, clip_name: str, type: str = "stable_diffusion", device: str = "default") -> tuple[Any]:
        if type == "flux":
            raise InvalidInput("type", "a Flux CLIP is CLIP-L and T5-XXL together: load both with DualCLIPLoader "
                                       "(type flux)")
        if type == "hunyuan_dit":
            raise InvalidInput("type", "HunyuanDiT's text encoders (BERT and mT5-XL) load with its checkpoint "
                                       "(CheckpointLoaderSimple)")
        if type in dit_loading.CLIP_TYPES:
            from comfy_nodes.diffusion.dit_loaders import load_clip_files

            return (load_clip_files({"clip_name": clip_name}, type),)
        if type != "stable_diffusion":
            raise InvalidInput("type", f"text encoders of type {type!r} are not supported yet; this release loads "
                                       "'stable_diffusion' (CLIP-L or OpenCLIP files), 'sd3' (CLIP-L, CLIP-G or "
                                       "T5-XXL) and 'pixart' (T5-XXL)")
        ctx = context.current()
        return (loading.load_text_encoder_file(ctx, path_of("text_encoders", clip_name, "clip_name")),)


class CLIPSetLastLayer:
    DESCRIPTION = "Which CLIP layer conditions the model: -1 the last, -2 the penultimate, ..."
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "set_last_layer"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"clip": ("CLIP",), "stop_at_clip_layer": ("INT", {"default": -1, "min": -24, "max": -1,
                                                                               "step": 1})}}

    def set_last_layer(self, clip: Any, stop_at_clip_layer: int) -> tuple[Any]:
        if not isinstance(clip, TextEncoder):
            raise InvalidInput("clip", f"expected a CLIP, got {type(clip).__name__}")
        layers = min(_layers(module) for module in clip.encoders.values())
        if -stop_at_clip_layer > layers:
            log.warning("CLIPSetLastLayer: layer %d is beyond the text encoder's %d layers; its last layer is used "
                        "(as ComfyUI does)", stop_at_clip_layer, layers)
        return (clip.with_last_layer(stop_at_clip_layer),)


def _layers(module: Any) -> int:
    return int(getattr(module, "text_model", module).config.num_hidden_layers)


NODE_CLASS_MAPPINGS = {"CheckpointLoaderSimple": CheckpointLoaderSimple, "CLIPLoader": CLIPLoader,
                       "CLIPSetLastLayer": CLIPSetLastLayer}
NODE_DISPLAY_NAME_MAPPINGS = {"CheckpointLoaderSimple": "Load Checkpoint", "CLIPLoader": "Load CLIP",
                              "CLIPSetLastLayer": "CLIP Set Last Layer"}
