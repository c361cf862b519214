"""ComfyUI's basic value nodes: constants, string joins and replacements, safe arithmetic, image size."""

from .image_size import GetImageSize
from .math_expression import MathExpression
from .strings import StringConcatenate, StringReplace
from .values import PrimitiveBoolean, PrimitiveFloat, PrimitiveInt, PrimitiveString, PrimitiveStringMultiline

NODE_CLASS_MAPPINGS = {
    "PrimitiveInt": PrimitiveInt,
    "PrimitiveFloat": PrimitiveFloat,
    "PrimitiveString": PrimitiveString,
    "PrimitiveStringMultiline": PrimitiveStringMultiline,
    "PrimitiveBoolean": PrimitiveBoolean,
    "StringConcatenate": StringConcatenate,
    "StringReplace": StringReplace,
    "MathExpression": MathExpression,
    "GetImageSize": GetImageSize,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "PrimitiveInt": "Int",
    "PrimitiveFloat": "Float",
    "PrimitiveString": "String",
    "PrimitiveStringMultiline": "String (Multiline)",
    "PrimitiveBoolean": "Boolean",
    "StringConcatenate": "Concatenate",
    "StringReplace": "Replace",
    "MathExpression": "Math Expression",
    "GetImageSize": "Get Image Size",
}
