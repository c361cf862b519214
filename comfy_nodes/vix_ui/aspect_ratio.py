"""VixUiAspectRatioSelector: a form dropdown of SDXL-friendly sizes, output as ratio, width and height."""

from __future__ import annotations

import re
from typing import Any

from visionatrix.errors import InvalidInput

from . import fields

ASPECT_RATIOS = (
    "1:1 (1024x1024)",
    "2:3 (832x1216)",
    "3:4 (896x1152)",
    "5:8 (768x1216)",
    "9:16 (768x1344)",
    "9:19 (704x1472)",
    "9:21 (640x1536)",
    "3:2 (1216x832)",
    "4:3 (1152x896)",
    "8:5 (1216x768)",
    "16:9 (1344x768)",
    "20:11 (1280x704)",
    "19:9 (1472x704)",
    "21:9 (1536x640)",
)

_CHOICE = re.compile(r"(?P<ratio>\d+:\d+) \((?P<width>\d+)x(?P<height>\d+)\)")


def parse_choice(choice: str) -> tuple[str, int, int]:
    """``"16:9 (1344x768)"`` -> ``("16:9", 1344, 768)``."""
    match = _CHOICE.fullmatch(choice) if choice in ASPECT_RATIOS else None
    if match is None:
        raise InvalidInput("aspect_ratio", f"{choice!r} is not one of the offered aspect ratios")
    return match["ratio"], int(match["width"]), int(match["height"])


class VixUiAspectRatioSelector:
    DESCRIPTION = "A dropdown of image sizes for the flow's form; outputs the ratio text, the width and the height."
    CATEGORY = fields.CATEGORY_UI
    RETURN_TYPES = ("STRING", "INT", "INT")
    RETURN_NAMES = ("ratio", "width", "height")
    FUNCTION = "run"
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "aspect_ratio": (list(ASPECT_RATIOS),),
                **fields.labels("Aspect Ratio"),
                **fields.placement(order=20, custom_id="aspect_ratio"),
            },
            "optional": fields.hidden_flag(),
        }

    def run(self, aspect_ratio: str, **attributes: Any) -> tuple[str, int, int]:
        return parse_choice(aspect_ratio)
