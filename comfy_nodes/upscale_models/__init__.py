"""Upscale models on spandrel: UpscaleModelLoader and ImageUpscaleWithModel (ComfyUI's inputs and outputs)."""

from .loader import UpscaleModelLoader
from .upscale import ImageUpscaleWithModel

NODE_CLASS_MAPPINGS = {
    "UpscaleModelLoader": UpscaleModelLoader,
    "ImageUpscaleWithModel": ImageUpscaleWithModel,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "UpscaleModelLoader": "Load Upscale Model",
    "ImageUpscaleWithModel": "Upscale Image (using Model)",
}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
