"""Nodes of popular third-party ComfyUI packs that the Visionatrix flows use, written from their documented
behaviour (names, inputs, outputs and defaults as in the original packs, so their graphs run unchanged)."""

from .essentials_resize import ImageResizePlus
from .evaluate import EvaluateIntegers
from .math_expression import MathExpressionPysssss

NODE_CLASS_MAPPINGS = {
    "Evaluate Integers": EvaluateIntegers,
    "ImageResize+": ImageResizePlus,
    "MathExpression|pysssss": MathExpressionPysssss,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "Evaluate Integers": "Evaluate Integers",
    "ImageResize+": "🔧 Image Resize",
    "MathExpression|pysssss": "Math Expression 🐍",
}
