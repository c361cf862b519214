"""LoraLoader and LoraLoaderModelOnly: a LoRA file of the ``loras`` folder layered on a MODEL (and CLIP).

The file is read once through the worker's model manager (``kind="lora"``, its tensors kept as a
:class:`~visionatrix.diffusion.lora.LoraFile`); the nodes return new MODEL / CLIP values carrying the LoRA's
patches, which are added to the shared networks only while they run and undone after. Formats, matching and the
patch arithmetic: :mod:`visionatrix.diffusion.lora`.
"""

from __future__ import annotations

from typing import Any

from visionatrix.diffusion.clip import TextEncoder
from visionatrix.diffusion.lora import LoraFile, LoraMatch, lora_patches
from visionatrix.diffusion.model import DiffusionModel
from visionatrix.errors import InvalidInput, ModelError
from visionatrix.nodes import context
from visionatrix.nodes.model_files import files_of, path_of, version_of

FOLDER = "loras"
KIND = "lora"
STRENGTH = {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.01}


def build_lora_file(state_dict: dict[str, Any]) -> LoraFile:
    """The model manager's build for a LoRA file: its tensors, held as one object."""
    if not state_dict:
        raise ValueError("the file holds no tensors")
    return LoraFile(state_dict)


def load_lora_file(lora_name: Any) -> tuple[LoraFile, Any]:
    """The LoRA ``lora_name`` of the loras folder (loaded once per file version) and its path."""
    ctx = context.current()
    path = path_of(FOLDER, lora_name, "lora_name")
    if ctx.models is None:
        raise ModelError("no model manager in this node context: LoRA loaders run inside an executor")
    return ctx.models.load(path, build_lora_file, kind=KIND), path


def apply_lora(model: Any, clip: Any, lora_name: Any, strength_model: float, strength_clip: float,
               ) -> tuple[Any, Any]:
    """``model`` and ``clip`` (either may be None) with the LoRA's patches added at the given strengths."""
    if model is not None and not isinstance(model, DiffusionModel):
        raise InvalidInput("model", f"expected a MODEL from a checkpoint loader, got {type(model).__name__}")
    if clip is not None and not isinstance(clip, TextEncoder):
        raise InvalidInput("clip", f"expected a CLIP from a checkpoint or CLIP loader, got {type(clip).__name__}")
    lora, path = load_lora_file(lora_name)
    targets: dict[str, Any] = {}
    if model is not None:
        targets["unet"] = model.unet
    if clip is not None:
        targets.update(clip.encoders)
    match: LoraMatch = lora_patches(lora, targets, strength_model, strength_clip, path)
    if model is not None and match.patches.get("unet"):
        model = model.with_patches(match.patches["unet"])
    if clip is not None:
        for name in clip.encoders:
            if match.patches.get(name):
                clip = clip.with_patches(name, match.patches[name])
    return model, clip


class LoraLoader:
    DESCRIPTION = ("LoRAs modify the diffusion and CLIP models, altering the way latents are denoised (styles, "
                   "subjects). Kohya, A1111, diffusers/peft and ComfyUI key formats; LoCon, LoHa, LoKr, DoRA. Several "
                   "LoRA nodes in a row stack.")
    CATEGORY = "loaders"
    RETURN_TYPES = ("MODEL", "CLIP")
    OUTPUT_TOOLTIPS = ("The modified diffusion model.", "The modified CLIP model.")
    FUNCTION = "load_lora"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "model": ("MODEL", {"tooltip": "The diffusion model the LoRA will be applied to."}),
            "clip": ("CLIP", {"tooltip": "The CLIP model the LoRA will be applied to."}),
            "lora_name": (files_of(FOLDER), {"tooltip": "The name of the LoRA."}),
            "strength_model": ("FLOAT", {**STRENGTH, "tooltip": "How strongly to modify the diffusion model. This "
                                                                "value can be negative."}),
            "strength_clip": ("FLOAT", {**STRENGTH, "tooltip": "How strongly to modify the CLIP model. This value "
                                                               "can be negative."}),
        }}

    @classmethod
    def IS_CHANGED(cls, lora_name: Any = None, **_: Any) -> str | float:
        return version_of(FOLDER, lora_name, "lora_name")

    def load_lora(self, model: Any, clip: Any, lora_name: str, strength_model: float, strength_clip: float,
                  ) -> tuple[Any, Any]:
        if strength_model == 0 and strength_clip == 0:
            return model, clip
        return apply_lora(model, clip, lora_name, strength_model, strength_clip)


class LoraLoaderModelOnly:
    DESCRIPTION = "Applies a LoRA to the diffusion model only (its text-encoder part, if any, is left out)."
    CATEGORY = "loaders"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_lora_model_only"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "model": ("MODEL",),
            "lora_name": (files_of(FOLDER),),
            "strength_model": ("FLOAT", STRENGTH),
        }}

    @classmethod
    def IS_CHANGED(cls, lora_name: Any = None, **_: Any) -> str | float:
        return version_of(FOLDER, lora_name, "lora_name")

    def load_lora_model_only(self, model: Any, lora_name: str, strength_model: float) -> tuple[Any]:
        if strength_model == 0:
            return (model,)
        return (apply_lora(model, None, lora_name, strength_model, 0)[0],)


NODE_CLASS_MAPPINGS = {"LoraLoader": LoraLoader, "LoraLoaderModelOnly": LoraLoaderModelOnly}
NODE_DISPLAY_NAME_MAPPINGS = {"LoraLoader": "Load LoRA", "LoraLoaderModelOnly": "LoraLoaderModelOnly"}
