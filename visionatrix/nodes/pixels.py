"""The image pixel limit (``VIX_MAX_IMAGE_PIXELS``): one check for every node that makes images, latents or masks.

The limit counts every pixel a node would produce, the whole batch together: ``batch * width * height``. A node
whose output size comes from numbers alone (``EmptyImage``, ``EmptyLatentImage``...) names the inputs that give it
in ``PIXEL_INPUTS = ("width", "height", "batch_size")`` (the batch name may be None); the executor then checks them
before the node runs: constants when the prompt is validated, linked values at run time. A node whose output size
also depends on an input (a resize, an upscale, a repeat) calls :func:`check_pixels` itself before it allocates.
Imports no torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from visionatrix.errors import InvalidInput
from visionatrix.nodes import context


def check_pixels(input_name: str, width: int, height: int, batch: int = 1, *, limit: int | None = None) -> None:
    """Refuse an output of ``batch`` images of ``width`` * ``height`` that is empty or has more pixels in all than
    ``limit`` (default: the current node context's ``max_image_pixels``), naming ``input_name``."""
    width, height, batch = int(width), int(height), int(batch)
    if width < 1 or height < 1 or batch < 1:
        raise InvalidInput(input_name, f"output size {width}x{height} (batch of {batch}) is empty")
    limit = context.current().max_image_pixels if limit is None else limit
    total = width * height * batch
    if total > limit:
        shown = f"{width}x{height}" if batch == 1 else f"{batch} x {width}x{height}"
        raise InvalidInput(input_name, f"output size {shown} = {total} pixels exceeds the limit of {limit} pixels"
                                       f" (VIX_MAX_IMAGE_PIXELS)")


def declared_inputs(node_class: type) -> tuple[str, str, str | None] | None:
    """The ``(width, height, batch)`` input names a node class declares in ``PIXEL_INPUTS``, or None."""
    names = getattr(node_class, "PIXEL_INPUTS", None)
    if not isinstance(names, tuple | list) or len(names) not in (2, 3):
        return None
    width, height, *rest = names
    return str(width), str(height), (str(rest[0]) if rest and rest[0] else None)


def check_declared(names: tuple[str, str, str | None], values: Mapping[str, Any], *,
                   limit: int | None = None) -> None:
    """:func:`check_pixels` on the declared inputs' ``values``; an input missing or not a number is left to the
    node (its own checks name it)."""
    width, height, batch = names
    raw = [values.get(width), values.get(height), values.get(batch, 1) if batch else 1]
    if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in raw):
        return
    if not all(math.isfinite(n) for n in raw):  # type: ignore[arg-type]  # numbers, checked above
        raise InvalidInput(width, f"output size {raw[0]}x{raw[1]} (batch of {raw[2]}) is not finite")
    numbers = [int(n) for n in raw]  # type: ignore[arg-type]  # checked above
    limit = context.current().max_image_pixels if limit is None else limit
    blamed = batch if batch and numbers[0] * numbers[1] <= limit else width
    check_pixels(blamed, *numbers, limit=limit)
