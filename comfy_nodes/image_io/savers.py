"""SaveImage and PreviewImage: write an IMAGE batch as PNGs and report them to the UI.

SaveImage writes into ``current().output_dir`` (``type: "output"``); PreviewImage into ``current().temp_dir``
(``type: "temp"``) under a random prefix. Files are created exclusively, so two saves racing for the same
counter never overwrite each other: the loser takes the next number.
"""

from __future__ import annotations

import secrets
import string
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from visionatrix.errors import InvalidInput
from visionatrix.nodes import context

from . import encoding, naming

_HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}
_PREVIEW_SUFFIX_CHARS = 5


def save_batch(images: torch.Tensor, root: Path, prefix: str, folder_type: str, **options: Any) -> list[dict]:
    """Write every image of the batch; returns ComfyUI's ``ui.images`` entries."""
    batch = encoding.check_batch(images)
    if not isinstance(prefix, str):
        raise InvalidInput(naming.PREFIX_INPUT, f"expected text, got {type(prefix).__name__}")
    height, width = int(batch.shape[1]), int(batch.shape[2])
    target = naming.plan_target(root, naming.expand_tokens(prefix, width, height, datetime.now()))
    target.folder.mkdir(parents=True, exist_ok=True)
    info = encoding.png_info(options.get("prompt"), options.get("extra_pnginfo"))
    counter = naming.next_counter(target)
    saved = []
    for frame in batch:
        context.current().check_interrupt()
        data = encoding.png_bytes(encoding.to_pil(frame), info, options.get("compress_level", 4))
        filename, counter = _write_new(target, counter, data)
        saved.append({"filename": filename, "subfolder": target.subfolder, "type": folder_type})
    return saved


def _write_new(target: naming.SaveTarget, counter: int, data: bytes) -> tuple[str, int]:
    """Create the first free ``<name>_<counter>_.png`` from ``counter`` on; returns it and the next counter."""
    while True:
        filename = target.filename(counter)
        try:
            with (target.folder / filename).open("xb") as handle:
                handle.write(data)
        except FileExistsError:
            counter += 1
            continue
        return filename, counter + 1


class SaveImage:
    DESCRIPTION = (
        "Saves images as PNG files in the output folder as <prefix>_<counter>_.png, with the workflow embedded. "
        "The prefix may include a subfolder and %width% %height% %year% %month% %day% %hour% %minute% %second%."
    )
    CATEGORY = "image"
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": (
                    "STRING",
                    {"default": "ComfyUI", "tooltip": "File name prefix; may name a subfolder."},
                ),
            },
            "hidden": dict(_HIDDEN),
        }

    def run(self, images: Any, filename_prefix: str = "ComfyUI", prompt: Any = None, extra_pnginfo: Any = None):
        root = context.current().output_dir
        saved = save_batch(images, root, filename_prefix, "output", prompt=prompt, extra_pnginfo=extra_pnginfo)
        return {"ui": {"images": saved}, "result": ()}


class PreviewImage:
    DESCRIPTION = "Shows images in the UI: saves them as temporary PNG files that may be cleared at any time."
    CATEGORY = "image"
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"images": ("IMAGE",)}, "hidden": dict(_HIDDEN)}

    def run(self, images: Any, prompt: Any = None, extra_pnginfo: Any = None):
        suffix = "".join(secrets.choice(string.ascii_lowercase) for _ in range(_PREVIEW_SUFFIX_CHARS))
        root = context.current().temp_dir
        saved = save_batch(
            images, root, f"ComfyUI_temp_{suffix}", "temp", prompt=prompt, extra_pnginfo=extra_pnginfo, compress_level=1
        )
        return {"ui": {"images": saved}, "result": ()}
