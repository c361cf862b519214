"""GetImageSize: the width, height and batch size of an IMAGE tensor ``[B, H, W, C]``."""

from __future__ import annotations

from typing import Any

from visionatrix.errors import InvalidInput


class GetImageSize:
    DESCRIPTION = "Outputs the width, height and number of images of an image batch."
    CATEGORY = "image"
    RETURN_TYPES = ("INT", "INT", "INT")
    RETURN_NAMES = ("width", "height", "batch_size")
    FUNCTION = "run"
    OUTPUT_NODE = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",)}}

    def run(self, image: Any) -> tuple[int, int, int]:
        shape = tuple(getattr(image, "shape", ()))
        if len(shape) != 4:
            raise InvalidInput("image", f"expected an image batch [B, H, W, C], got shape {shape}")
        batch_size, height, width = (int(n) for n in shape[:3])
        return width, height, batch_size
