"""Turning an image file into ComfyUI tensors: IMAGE ``[B, H, W, 3]`` and MASK ``[B, H, W]``, floats in 0..1.

Every frame is turned upright by its EXIF orientation. 16-bit greyscale is scaled to 0..1. A mask is
``1 - alpha`` (1 = transparent, the area to work on); images without alpha get ComfyUI's empty 64x64 mask.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from visionatrix.errors import InvalidInput
from visionatrix.nodes import context

EMPTY_MASK_SIZE = 64
_SINGLE_FRAME_FORMATS = frozenset({"MPO"})  # camera JPEGs carrying extra preview pictures


@contextlib.contextmanager
def open_checked(path: Path, input_name: str, max_pixels: int) -> Iterator[Image.Image]:
    """Open ``path`` as an image, refusing missing files, non-images and more than ``max_pixels`` in all frames."""
    if not path.is_file():
        raise InvalidInput(input_name, f"file {path.name!r} does not exist")
    try:
        image = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise InvalidInput(input_name, f"{path.name!r} is too large to open: {exc}") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidInput(input_name, f"{path.name!r} is not a readable image") from exc
    with image:
        frames = frame_count(image)
        if image.width * image.height * frames > max_pixels:
            raise InvalidInput(
                input_name,
                f"{path.name!r} has {image.width}x{image.height} pixels x {frames} frame(s), "
                f"over the limit of {max_pixels} pixels",
            )
        yield image


def frame_count(image: Image.Image) -> int:
    return 1 if image.format in _SINGLE_FRAME_FORMATS else getattr(image, "n_frames", 1)


def upright_frames(image: Image.Image) -> Iterator[Image.Image]:
    """Each frame (only the first for single-frame formats) rotated by its EXIF orientation."""
    for frame in itertools.islice(ImageSequence.Iterator(image), frame_count(image)):
        yield ImageOps.exif_transpose(frame)


def frame_arrays(frame: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB ``[H, W, 3]`` and alpha ``[H, W]`` (``None`` when the frame has no transparency), floats in 0..1."""
    if frame.mode.startswith("I"):
        grey = np.clip(np.asarray(frame, dtype=np.float32) / 65535.0, 0.0, 1.0)
        return np.repeat(grey[..., None], 3, axis=2), None
    if "A" in frame.getbands() or "transparency" in frame.info:
        rgba = np.asarray(frame.convert("RGBA"), dtype=np.float32) / 255.0
        return rgba[..., :3], rgba[..., 3]
    return np.asarray(frame.convert("RGB"), dtype=np.float32) / 255.0, None


def decode(image: Image.Image, input_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """IMAGE and MASK batches of every frame sized like the first (other sizes are skipped, as ComfyUI does)."""
    colours: list[np.ndarray] = []
    alphas: list[np.ndarray | None] = []
    try:
        for frame in upright_frames(image):
            context.current().check_interrupt()
            rgb, alpha = frame_arrays(frame)
            if colours and rgb.shape != colours[0].shape:
                continue
            colours.append(rgb)
            alphas.append(alpha)
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(input_name, f"the image data cannot be decoded: {exc}") from exc
    return torch.from_numpy(np.stack(colours)), _masks(alphas, colours[0].shape[:2])


def _masks(alphas: list[np.ndarray | None], size: tuple[int, ...]) -> torch.Tensor:
    if all(alpha is None for alpha in alphas):
        return torch.zeros((len(alphas), EMPTY_MASK_SIZE, EMPTY_MASK_SIZE), dtype=torch.float32)
    masks = [1.0 - alpha if alpha is not None else np.zeros(size, dtype=np.float32) for alpha in alphas]
    return torch.from_numpy(np.stack(masks))


def channel_mask(image: Image.Image, channel: str, input_name: str) -> torch.Tensor:
    """MASK ``[1, H, W]`` from one channel of the first frame; ``alpha`` is inverted (1 = transparent)."""
    try:
        rgb, alpha = frame_arrays(next(upright_frames(image)))
    except (OSError, ValueError, SyntaxError) as exc:
        raise InvalidInput(input_name, f"the image data cannot be decoded: {exc}") from exc
    if channel == "alpha":
        plane = 1.0 - alpha if alpha is not None else np.zeros(rgb.shape[:2], dtype=np.float32)
    else:
        plane = rgb[..., ("red", "green", "blue").index(channel)]
    return torch.from_numpy(np.ascontiguousarray(plane, dtype=np.float32))[None]
