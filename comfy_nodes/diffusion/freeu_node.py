"""FreeU_V2: FreeU v2 on a MODEL (an option the sampling run applies; see :mod:`visionatrix.diffusion.freeu`)."""

from __future__ import annotations

from typing import Any

from visionatrix.diffusion.model import DiffusionModel
from visionatrix.errors import InvalidInput

OPTION = "freeu_v2"


def _factor(default: float) -> tuple[str, dict[str, Any]]:
    return ("FLOAT", {"default": default, "min": 0.0, "max": 10.0, "step": 0.01})


class FreeU_V2:
    DESCRIPTION = ("FreeU v2: strengthens the decoder's backbone features (b1, b2) and damps the low frequencies of "
                   "its skip connections (s1, s2), for more detail without retraining.")
    CATEGORY = "model_patches/unet"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": ("MODEL",), "b1": _factor(1.3), "b2": _factor(1.4), "s1": _factor(0.9),
                             "s2": _factor(0.2)}}

    def patch(self, model: Any, b1: float, b2: float, s1: float, s2: float) -> tuple[DiffusionModel]:
        if not isinstance(model, DiffusionModel):
            raise InvalidInput("model", f"expected a MODEL, got {type(model).__name__}")
        return (model.with_option(OPTION, (float(b1), float(b2), float(s1), float(s2))),)


NODE_CLASS_MAPPINGS = {"FreeU_V2": FreeU_V2}
NODE_DISPLAY_NAME_MAPPINGS = {"FreeU_V2": "FreeU_V2"}
