"""InpaintStitch (lquesada's ComfyUI-Inpaint-CropAndStitch): put inpainted crops back into their images.

Per image of the batch (one STITCH entry each): when the crop was rescaled, the inpainted image and the blend mask
are resized back with ``rescale_algorithm`` to ``ceil(size / scale) + 1`` pixels at ``floor(position / scale)``
(the original's rounding); a blend mask of another size than the inpainted image is resized to it bilinearly.
Then ``mask * inpainted + (1 - mask) * original`` over the part of the crop that lies on the picture; the rest of
the picture is untouched.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from comfy_nodes.image_ops import shapes
from visionatrix.errors import InvalidInput

from . import resampling
from .crop import STITCH_KEYS
from .geometry import RESCALE_TOLERANCE


class InpaintStitch:
    DESCRIPTION = (
        "Stitches the inpainted crop from Inpaint Crop back into the original image, blended by the crop's blend "
        "mask, without altering the unmasked areas."
    )
    CATEGORY = "inpaint"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    FUNCTION = "inpaint_stitch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "stitch": ("STITCH",),
                "inpainted_image": ("IMAGE",),
                "rescale_algorithm": (list(resampling.RESCALE_ALGORITHMS), {"default": "bislerp"}),
            }
        }

    def inpaint_stitch(self, stitch, inpainted_image, rescale_algorithm):
        inpainted_image = shapes.require_image("inpainted_image", inpainted_image)
        resampling.check_algorithm("rescale_algorithm", rescale_algorithm)
        if not isinstance(stitch, dict) or any(not isinstance(stitch.get(key), list) for key in STITCH_KEYS):
            raise InvalidInput("stitch", "expected the STITCH output of Inpaint Crop")
        batch = inpainted_image.shape[0]
        if len(stitch["x"]) != batch:
            raise InvalidInput("inpainted_image", f"batch of {batch} does not match the stitch's "
                                                  f"{len(stitch['x'])} crop(s)")
        results = [stitch_one({key: stitch[key][index] for key in STITCH_KEYS}, inpainted_image[index : index + 1],
                              rescale_algorithm) for index in range(batch)]
        return (torch.cat(results),)


def _rescaled(piece: dict[str, Any]) -> bool:
    return any(abs(piece[key] - 1.0) > RESCALE_TOLERANCE for key in ("rescale_x", "rescale_y"))


def stitch_one(piece: dict[str, Any], inpainted: torch.Tensor, algorithm: str) -> torch.Tensor:
    """One stitched image ``[1, H, W, C]`` from its STITCH entry and its inpainted crop ``[1, h, w, C']``."""
    original = piece["original_image"]
    device = inpainted.device
    source = shapes.match_channels(inpainted, original.shape[-1]).movedim(-1, 1).float()
    blend = piece["cropped_mask_blend"].to(device).unsqueeze(1).float()
    x, y = piece["x"], piece["y"]
    if _rescaled(piece):
        width = math.ceil(source.shape[3] / piece["rescale_x"]) + 1
        height = math.ceil(source.shape[2] / piece["rescale_y"]) + 1
        x, y = math.floor(x / piece["rescale_x"]), math.floor(y / piece["rescale_y"])
        source = resampling.resize(source, width, height, algorithm).clamp(0.0, 1.0)
        blend = resampling.resize(blend, width, height, algorithm).clamp(0.0, 1.0)
    if blend.shape[2:] != source.shape[2:]:
        blend = F.interpolate(blend, size=source.shape[2:], mode="bilinear")
    # The crop's place on the canvas, clipped to the picture (which starts at start_x, start_y).
    left, top = max(x, piece["start_x"]), max(y, piece["start_y"])
    right = min(x + source.shape[3], piece["start_x"] + piece["initial_width"])
    bottom = min(y + source.shape[2], piece["start_y"] + piece["initial_height"])
    result = original.to(device).clone()
    if right <= left or bottom <= top:
        return result
    part = (slice(None), slice(None), slice(top - y, bottom - y), slice(left - x, right - x))
    weight = blend[part]
    picture_rows = slice(top - piece["start_y"], bottom - piece["start_y"])
    picture_cols = slice(left - piece["start_x"], right - piece["start_x"])
    under = result[:, picture_rows, picture_cols, :].movedim(-1, 1).float()
    mixed = weight * source[part] + (1.0 - weight) * under
    result[:, picture_rows, picture_cols, :] = mixed.movedim(1, -1).to(result.dtype)
    return result
