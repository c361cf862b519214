"""IMAGE tensor frames to PNG bytes, with the workflow embedded as PNG text chunks (ComfyUI's convention)."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from visionatrix.errors import InvalidInput

_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


def check_batch(images: Any) -> torch.Tensor:
    """``images`` as a ``[B, H, W, C]`` tensor with 1, 3 or 4 channels and at least one image."""
    shape = tuple(getattr(images, "shape", ()))
    if not isinstance(images, torch.Tensor) or len(shape) != 4 or shape[0] == 0 or shape[3] not in _MODES:
        raise InvalidInput("images", f"expected an image batch [B, H, W, C] with C in 1, 3, 4; got shape {shape}")
    return images


def to_pil(frame: torch.Tensor) -> Image.Image:
    """One ``[H, W, C]`` frame (floats 0..1) as an 8-bit PIL image: ``255·x`` truncated, as ComfyUI saves images
    (so the same latent gives the same PNG bytes); NaN becomes 0."""
    pixels = np.nan_to_num(frame.detach().to(device="cpu", dtype=torch.float32).numpy(), nan=0.0)
    data = np.clip(pixels * 255.0, 0, 255).astype(np.uint8)
    mode = _MODES[data.shape[2]]
    return Image.fromarray(data[..., 0] if mode == "L" else data, mode=mode)


def png_info(prompt: Any, extra_pnginfo: Mapping[str, Any] | None) -> PngInfo:
    """Text chunks: ``prompt`` (the API prompt as JSON) and one JSON chunk per ``extra_pnginfo`` key."""
    info = PngInfo()
    if prompt is not None:
        info.add_text("prompt", json.dumps(prompt))
    for key, value in (extra_pnginfo or {}).items():
        info.add_text(str(key), json.dumps(value))
    return info


def png_bytes(image: Image.Image, info: PngInfo, compress_level: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=compress_level)
    return buffer.getvalue()
