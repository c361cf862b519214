"""LoadImage and LoadImageMask: read a file of the input folder into IMAGE/MASK tensors.

The file name comes from the user, so it is resolved strictly inside ``current().input_dir``.
``IS_CHANGED`` fingerprints the file's bytes so a changed upload re-runs the node; ``VALIDATE_INPUTS``
checks the file exists before the graph is queued (and lets names uploaded after the list was built pass).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch

from visionatrix.errors import InvalidInput
from visionatrix.nodes import context

from . import decoding, paths

MASK_CHANNELS = ["alpha", "red", "green", "blue"]
_HASH_CHUNK_BYTES = 1024 * 1024


def input_path(name: Any) -> Path:
    return paths.resolve_inside(context.current().input_dir, name, "image")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


class _InputFileNode:
    CATEGORY = "image"
    FUNCTION = "run"
    OUTPUT_NODE = False

    @classmethod
    def image_choice(cls) -> tuple[list[str], dict[str, bool]]:
        return (paths.list_images(context.current().input_dir), {"image_upload": True})

    @classmethod
    def IS_CHANGED(cls, image: Any, **_: Any) -> str | float:
        try:
            return file_sha256(input_path(image))
        except (InvalidInput, OSError):
            return float("nan")  # unreadable now: always re-run, and let the run report why

    @classmethod
    def VALIDATE_INPUTS(cls, image: Any) -> bool | str:
        try:
            path = input_path(image)
        except InvalidInput as exc:
            return exc.message
        return True if path.is_file() else f"image: file {image!r} does not exist in the input folder"


class LoadImage(_InputFileNode):
    DESCRIPTION = (
        "Loads an image of the input folder (upright by its EXIF orientation). Every frame of an animated "
        "image becomes one image of the batch. The mask is 1 - alpha, or an empty 64x64 mask without alpha."
    )
    RETURN_TYPES = ("IMAGE", "MASK")
    RETURN_NAMES = ("IMAGE", "MASK")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": cls.image_choice()}}

    def run(self, image: str) -> tuple[torch.Tensor, torch.Tensor]:
        path = input_path(image)
        with decoding.open_checked(path, "image", context.current().max_image_pixels) as opened:
            return decoding.decode(opened, "image")


class LoadImageMask(_InputFileNode):
    DESCRIPTION = (
        "Loads one channel of an image of the input folder as a mask. The alpha channel is inverted "
        "(1 = transparent); an image without alpha gives an all-zero mask."
    )
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("MASK",)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": cls.image_choice(), "channel": (list(MASK_CHANNELS),)}}

    def run(self, image: str, channel: str) -> tuple[torch.Tensor]:
        if channel not in MASK_CHANNELS:
            raise InvalidInput("channel", f"{channel!r} is not one of {MASK_CHANNELS}")
        path = input_path(image)
        with decoding.open_checked(path, "image", context.current().max_image_pixels) as opened:
            return (decoding.channel_mask(opened, channel, "image"),)
