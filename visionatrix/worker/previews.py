"""Previews a node shows while it runs (a sampler's latent image, say), made small and JPEG for the client.

Nodes pass what ComfyUI's progress hook takes: ``("JPEG" | "PNG", PIL image, max size)`` or a bare PIL image. The
worker sends at most one preview per progress interval, the newest.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

DEFAULT_MAX_SIDE = 512
MAX_PREVIEW_BYTES = 4 * 1024 * 1024


def encode_preview(preview: Any) -> bytes | None:
    """JPEG bytes of ``preview`` fitted in its max size (512 by default); None when it is not an image."""
    max_side = DEFAULT_MAX_SIDE
    image = preview
    if isinstance(preview, tuple | list) and len(preview) >= 2:
        image = preview[1]
        if len(preview) >= 3 and isinstance(preview[2], int) and preview[2] > 0:
            max_side = preview[2]
    if not isinstance(image, Image.Image):
        return None
    picture = image.convert("RGB")
    picture.thumbnail((max_side, max_side))
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=85)
    data = out.getvalue()
    return data if len(data) <= MAX_PREVIEW_BYTES else None
