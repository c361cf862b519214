"""VixDynamicLoraDefinition: marks where a flow accepts LoRAs picked in the Visionatrix UI.

At run time it passes ``model`` and ``clip`` through unchanged; the LoRAs themselves are ``LoraLoader`` nodes the
flow importer finds downstream of it (``visionatrix/flows/importers/vix_params.py`` turns them into
``loras_in_param_<node>`` strength parameters). ``base_model_type`` (CivitAI's name, e.g. "Flux.1 D") and
``description`` are read by the UI only.
"""

from __future__ import annotations

from typing import Any

from . import fields


class VixDynamicLoraDefinition:
    DESCRIPTION = "Node that allows dynamic selection of any supported LoRAs from CivitAI in the Visionatrix UI."
    CATEGORY = fields.CATEGORY_UI
    RETURN_TYPES = ("MODEL", "CLIP")
    OUTPUT_TOOLTIPS = ("The modified diffusion model.", "The modified CLIP model.")
    FUNCTION = "do_it"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "The diffusion model the LoRA will be applied to."}),
                "clip": ("CLIP", {"tooltip": "The CLIP model the LoRA will be applied to."}),
                "base_model_type": ("STRING", {"tooltip": "The base type of model in CivitAI format."}),
                "description": ("STRING", {"tooltip": "Brief explanation of LoRA functionality at the added place."}),
            },
        }

    def do_it(self, model: Any, clip: Any, **ui_fields: Any) -> tuple[Any, Any]:
        return model, clip
