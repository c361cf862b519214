"""CLIPTextEncode, CLIPTextEncodeSDXL and CLIPTextEncodeSDXLRefiner: prompts to CONDITIONING.

ComfyUI's prompt syntax (``(word:1.2)``, ``(word)``, ``\\(`` escapes, ``embedding:name``) and prompts longer than
77 tokens (chunks side by side) come from :mod:`visionatrix.diffusion.text`. SDXL conditioning carries the pooled
text embedding and, from the SDXL nodes, the size/crop (refiner: aesthetic score) numbers.
"""

from __future__ import annotations

from typing import Any

from visionatrix.diffusion.clip import TextEncoder
from visionatrix.errors import InvalidInput

MAX_RESOLUTION = 16384


def _clip(clip: Any) -> TextEncoder:
    if clip is None:
        raise InvalidInput("clip", "no CLIP: the checkpoint has no text encoder; load one with CLIPLoader")
    if not isinstance(clip, TextEncoder):
        raise InvalidInput("clip", f"expected a CLIP, got {type(clip).__name__}")
    return clip


def _conditioning(cond: Any, pooled: Any, **options: Any) -> list[list[Any]]:
    extra = {"pooled_output": pooled} if pooled is not None else {}
    return [[cond, {**extra, **options}]]


def _size(default: int) -> tuple[str, dict[str, Any]]:
    return ("INT", {"default": default, "min": 0, "max": MAX_RESOLUTION})


class CLIPTextEncode:
    DESCRIPTION = "Encodes a text prompt with a CLIP model into conditioning that guides the diffusion model."
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    OUTPUT_TOOLTIPS = ("A conditioning containing the embedded text used to guide the diffusion model.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "text": ("STRING", {"multiline": True, "dynamicPrompts": True, "tooltip": "The text to be encoded."}),
            "clip": ("CLIP", {"tooltip": "The CLIP model used for encoding the text."})}}

    def encode(self, clip: Any, text: str) -> tuple[Any]:
        cond, options = _clip(clip).conditioning(str(text))
        return ([[cond, options]],)


class CLIPTextEncodeSDXL:
    DESCRIPTION = "SDXL conditioning: CLIP-G and CLIP-L texts with the size and crop numbers SDXL was trained on."
    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "clip": ("CLIP",), "width": _size(1024), "height": _size(1024), "crop_w": _size(0), "crop_h": _size(0),
            "target_width": _size(1024), "target_height": _size(1024),
            "text_g": ("STRING", {"multiline": True, "dynamicPrompts": True}),
            "text_l": ("STRING", {"multiline": True, "dynamicPrompts": True})}}

    def encode(self, clip: Any, width: int, height: int, crop_w: int, crop_h: int, target_width: int,
               target_height: int, text_g: str, text_l: str) -> tuple[Any]:
        encoder = _clip(clip)
        if "clip_g" not in encoder.encoders:
            raise InvalidInput("clip", "CLIPTextEncodeSDXL needs an SDXL CLIP (CLIP-L and OpenCLIP bigG)")
        cond, pooled = encoder.encode(str(text_g), {"clip_l": str(text_l), "clip_g": str(text_g)})
        return (_conditioning(cond, pooled, width=width, height=height, crop_w=crop_w, crop_h=crop_h,
                              target_width=target_width, target_height=target_height),)


class CLIPTextEncodeSDXLRefiner:
    DESCRIPTION = "SDXL refiner conditioning: the text with an aesthetic score and the image size."
    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {
            "ascore": ("FLOAT", {"default": 6.0, "min": 0.0, "max": 1000.0, "step": 0.01}),
            "width": _size(1024), "height": _size(1024),
            "text": ("STRING", {"multiline": True, "dynamicPrompts": True}), "clip": ("CLIP",)}}

    def encode(self, clip: Any, ascore: float, width: int, height: int, text: str) -> tuple[Any]:
        cond, pooled = _clip(clip).encode(str(text))
        return (_conditioning(cond, pooled, aesthetic_score=ascore, width=width, height=height),)


NODE_CLASS_MAPPINGS = {"CLIPTextEncode": CLIPTextEncode, "CLIPTextEncodeSDXL": CLIPTextEncodeSDXL,
                       "CLIPTextEncodeSDXLRefiner": CLIPTextEncodeSDXLRefiner}
NODE_DISPLAY_NAME_MAPPINGS = {"CLIPTextEncode": "CLIP Text Encode (Prompt)"}
