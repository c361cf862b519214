"""Nodes of popular third-party ComfyUI packs that the Visionatrix flows use, written from their documented
behaviour (names, inputs, outputs and defaults as in the original packs, so their graphs run unchanged)."""

from .evaluate import EvaluateIntegers

NODE_CLASS_MAPPINGS = {
    "Evaluate Integers": EvaluateIntegers,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "Evaluate Integers": "Evaluate Integers",
}
