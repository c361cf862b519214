"""Nodes of the flow-matching transformer families (SD3/SD3.5, Flux.1, AuraFlow): their empty latent, sampling
shifts, Flux guidance and Kontext references, the SD3/Flux prompt encoders and Skip Layer Guidance (ComfyUI's
inputs, defaults and outputs)."""

from __future__ import annotations

import math
from typing import Any

import torch

from comfy_nodes.diffusion.conditioning_nodes import entries, with_values
from comfy_nodes.diffusion.text_nodes import _clip, _conditioning
from visionatrix.diffusion.checkpoints.detect import Family
from visionatrix.diffusion.dit.loading import flux_mu
from visionatrix.diffusion.model import DiffusionModel
from visionatrix.diffusion.sampling import model_sampling as sampling
from visionatrix.errors import InvalidInput
from visionatrix.nodes import pixels

MAX_RESOLUTION = 16384
SD3_LATENT_CHANNELS = 16


def require_model(model: Any, *families: Family) -> DiffusionModel:
    if not isinstance(model, DiffusionModel):
        raise InvalidInput("model", f"expected a MODEL, got {type(model).__name__}")
    if families and model.family not in families:
        names = " or ".join(str(f) for f in families)
        raise InvalidInput("model", f"this node takes a {names} model; this is a {model.family} model")
    return model


def _finite(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(name, f"expected a number, got {value!r}") from exc
    if not math.isfinite(number):
        raise InvalidInput(name, f"expected a finite number, got {value!r}")
    return number


class EmptySD3LatentImage:
    DESCRIPTION = "A batch of empty 16-channel latents (SD3, SD3.5, Flux) of the given size."
    CATEGORY = "latent/sd3"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "generate"
    PIXEL_INPUTS = ("width", "height", "batch_size")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        size = {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 16}
        return {"required": {"width": ("INT", dict(size)), "height": ("INT", dict(size)),
                             "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    def generate(self, width: int, height: int, batch_size: int = 1) -> tuple[dict[str, Any]]:
        if int(width) < 8 or int(height) < 8 or int(batch_size) < 1:
            raise InvalidInput("width", f"an empty latent of {width}x{height} pixels x {batch_size} has no cells")
        pixels.check_pixels("width", width, height, batch_size)
        shape = (int(batch_size), SD3_LATENT_CHANNELS, int(height) // 8, int(width) // 8)
        return ({"samples": torch.zeros(shape, dtype=torch.float32)},)


class ModelSamplingSD3:
    DESCRIPTION = "Shifts the flow-matching timesteps of an SD3 model (higher: more steps at high noise)."
    CATEGORY = "advanced/model"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    MULTIPLIER = 1000.0
    FAMILIES: tuple[Family, ...] = (Family.SD3, Family.FLUX, Family.AURAFLOW)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",),
                             "shift": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 100.0, "step": 0.01})}}

    def patch(self, model: Any, shift: float) -> tuple[DiffusionModel]:
        model = require_model(model, *self.FAMILIES)
        value = _finite("shift", shift)
        if value <= 0:
            raise InvalidInput("shift", f"must be above 0, got {value}")
        multiplier = 1.0 if model.family is Family.FLUX else self.MULTIPLIER
        return (model.with_sampling(sampling.flow(value, multiplier)),)


class ModelSamplingAuraFlow(ModelSamplingSD3):
    DESCRIPTION = "Shifts the flow-matching timesteps of an AuraFlow model (timestep = t, not t x 1000)."
    MULTIPLIER = 1.0

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",),
                             "shift": ("FLOAT", {"default": 1.73, "min": 0.0, "max": 100.0, "step": 0.01})}}

    def patch_aura(self, model: Any, shift: float) -> tuple[DiffusionModel]:
        return self.patch(model, shift)

    FUNCTION = "patch_aura"


class ModelSamplingFlux:
    DESCRIPTION = ("Flux's resolution-dependent time shift: base_shift at 256x256 up to max_shift at 1024x1024 "
                   "(linear in the number of image tokens).")
    CATEGORY = "advanced/model"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        size = {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 8}
        return {"required": {
            "model": ("MODEL",),
            "max_shift": ("FLOAT", {"default": 1.15, "min": 0.0, "max": 100.0, "step": 0.01}),
            "base_shift": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 100.0, "step": 0.01}),
            "width": ("INT", dict(size)), "height": ("INT", dict(size))}}

    def patch(self, model: Any, max_shift: float, base_shift: float, width: int, height: int,
              ) -> tuple[DiffusionModel]:
        model = require_model(model, Family.FLUX)
        mu = flux_mu(int(width), int(height), _finite("base_shift", base_shift), _finite("max_shift", max_shift))
        if mu > 50:
            raise InvalidInput("max_shift", f"the shift for {width}x{height} ({mu:.1f}) is too large to sample")
        return (model.with_sampling(sampling.flux(mu)),)


class FluxGuidance:
    DESCRIPTION = "Sets the guidance a Flux dev/Kontext/Fill model is given (distilled guidance, not CFG)."
    CATEGORY = "advanced/conditioning/flux"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning": ("CONDITIONING",),
                             "guidance": ("FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1})}}

    def append(self, conditioning: Any, guidance: float) -> tuple[list[Any]]:
        return (with_values("conditioning", conditioning, {"guidance": _finite("guidance", guidance)}),)


class ReferenceLatent:
    DESCRIPTION = "Adds a reference image's latent to the conditioning (Flux Kontext edits the reference)."
    CATEGORY = "advanced/conditioning/edit_models"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "append"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"conditioning": ("CONDITIONING",)}, "optional": {"latent": ("LATENT",)}}

    def append(self, conditioning: Any, latent: Any = None) -> tuple[list[Any]]:
        if latent is None:
            return (conditioning,)
        if not isinstance(latent, dict) or not isinstance(latent.get("samples"), torch.Tensor) \
                or latent["samples"].ndim != 4:
            raise InvalidInput("latent", "expected a LATENT (a dict with 'samples' shaped [B, C, H, W])")
        out = []
        for cond, options in entries("conditioning", conditioning):
            options["reference_latents"] = [*options.get("reference_latents", []), latent["samples"]]
            out.append([cond, options])
        return (out,)


class FluxKontextImageScale:
    DESCRIPTION = "Resizes an image to the Kontext training resolution closest to its aspect ratio (Lanczos)."
    CATEGORY = "advanced/conditioning/flux"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "scale"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",)}}

    def scale(self, image: Any) -> tuple[torch.Tensor]:
        from diffusers.pipelines.flux.pipeline_flux_kontext import PREFERRED_KONTEXT_RESOLUTIONS

        from comfy_nodes.image_ops import sampling as image_sampling
        from comfy_nodes.image_ops import shapes

        image = shapes.require_image("image", image)
        aspect = image.shape[2] / image.shape[1]
        _, width, height = min((abs(aspect - w / h), w, h) for w, h in PREFERRED_KONTEXT_RESOLUTIONS)
        from comfy_nodes.image_ops.resize import center_crop_to_aspect

        return (image_sampling.resample(center_crop_to_aspect(image, width, height), width, height, "lanczos"),)


class CLIPTextEncodeFlux:
    DESCRIPTION = "Flux conditioning: a CLIP-L text (pooled) and a T5-XXL text (tokens), with the guidance."
    CATEGORY = "advanced/conditioning/flux"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        text = ("STRING", {"multiline": True, "dynamicPrompts": True})
        return {"required": {"clip": ("CLIP",), "clip_l": text, "t5xxl": text,
                             "guidance": ("FLOAT", {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1})}}

    def encode(self, clip: Any, clip_l: str, t5xxl: str, guidance: float) -> tuple[list[Any]]:
        encoder = _clip(clip)
        if encoder.family is not Family.FLUX:
            raise InvalidInput("clip", f"CLIPTextEncodeFlux takes a Flux CLIP (DualCLIPLoader, type flux); this one "
                                       f"is {encoder.family}")
        cond, pooled = encoder.encode(str(t5xxl), {"clip_l": str(clip_l), "t5xxl": str(t5xxl)})
        return (_conditioning(cond, pooled, guidance=_finite("guidance", guidance)),)


class CLIPTextEncodeSD3:
    DESCRIPTION = ("SD3 conditioning: a text per encoder (CLIP-L, CLIP-G, T5-XXL); empty_padding none leaves an "
                   "encoder with an empty text out.")
    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        text = ("STRING", {"multiline": True, "dynamicPrompts": True})
        return {"required": {"clip": ("CLIP",), "clip_l": text, "clip_g": text, "t5xxl": text,
                             "empty_padding": (["none", "empty_prompt"],)}}

    def encode(self, clip: Any, clip_l: str, clip_g: str, t5xxl: str, empty_padding: str) -> tuple[list[Any]]:
        encoder = _clip(clip)
        if encoder.family is not Family.SD3:
            raise InvalidInput("clip", f"CLIPTextEncodeSD3 takes an SD3 CLIP (TripleCLIPLoader or an SD3 "
                                       f"checkpoint); this one is {encoder.family}")
        if empty_padding not in ("none", "empty_prompt"):
            raise InvalidInput("empty_padding", f"expected none or empty_prompt, got {empty_padding!r}")
        texts = {"clip_l": str(clip_l), "clip_g": str(clip_g), "t5xxl": str(t5xxl)}
        cond, pooled = encoder.encode(str(t5xxl), texts, empty_padding=empty_padding == "empty_prompt")
        return (_conditioning(cond, pooled),)


class SkipLayerGuidanceSD3:
    DESCRIPTION = ("Skip Layer Guidance for SD3.5: between start and end percent, the positive prediction is pushed "
                   "away from one made without the given joint blocks (scale x their difference).")
    CATEGORY = "advanced/guidance"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "skip_guidance_sd3"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "model": ("MODEL",), "layers": ("STRING", {"default": "7, 8, 9", "multiline": False}),
            "scale": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 10.0, "step": 0.1}),
            "start_percent": ("FLOAT", {"default": 0.01, "min": 0.0, "max": 1.0, "step": 0.001}),
            "end_percent": ("FLOAT", {"default": 0.15, "min": 0.0, "max": 1.0, "step": 0.001})}}

    def skip_guidance_sd3(self, model: Any, layers: str, scale: float, start_percent: float,
                          end_percent: float) -> tuple[DiffusionModel]:
        model = require_model(model, Family.SD3)
        try:
            indices = tuple(int(part) for part in str(layers).replace(" ", "").split(",") if part)
        except ValueError as exc:
            raise InvalidInput("layers", f"expected block numbers separated by commas, got {layers!r}") from exc
        depth = len(model.unet.transformer_blocks)
        bad = [index for index in indices if not 0 <= index < depth]
        if bad:
            raise InvalidInput("layers", f"blocks {bad} are not among this model's {depth} joint blocks "
                                         f"(0..{depth - 1})")
        strength = _finite("scale", scale)
        if not indices or strength == 0:
            return (model,)
        ms = model.model_sampling
        start = ms.percent_to_sigma(_finite("start_percent", start_percent))
        end = ms.percent_to_sigma(_finite("end_percent", end_percent))
        return (model.with_option("skip_layer_guidance", (indices, strength, start, end)),)


NODE_CLASS_MAPPINGS = {
    "EmptySD3LatentImage": EmptySD3LatentImage, "ModelSamplingSD3": ModelSamplingSD3,
    "ModelSamplingAuraFlow": ModelSamplingAuraFlow, "ModelSamplingFlux": ModelSamplingFlux,
    "FluxGuidance": FluxGuidance, "ReferenceLatent": ReferenceLatent, "FluxKontextImageScale": FluxKontextImageScale,
    "CLIPTextEncodeFlux": CLIPTextEncodeFlux, "CLIPTextEncodeSD3": CLIPTextEncodeSD3,
    "SkipLayerGuidanceSD3": SkipLayerGuidanceSD3,
}
NODE_DISPLAY_NAME_MAPPINGS = {"EmptySD3LatentImage": "EmptySD3LatentImage", "FluxKontextImageScale":
                              "FluxKontextImageScale"}
