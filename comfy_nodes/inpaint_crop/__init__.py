"""Inpaint Crop and Stitch (lquesada's ComfyUI-Inpaint-CropAndStitch): sample only around the mask, then put the
result back. Class names, inputs, defaults and outputs as the original pack, so its graphs run unchanged."""

from .crop import InpaintCrop
from .stitch import InpaintStitch

NODE_CLASS_MAPPINGS = {
    "InpaintCrop": InpaintCrop,
    "InpaintStitch": InpaintStitch,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "InpaintCrop": "✂️ Inpaint Crop",
    "InpaintStitch": "✂️ Inpaint Stitch",
}
