"""Where InpaintCrop cuts: the original node's box arithmetic, in whole pixels, with no tensors.

The image is first thought of as *extended*: ``(width + 1) // 2`` rows above and below and ``(height + 1) // 2``
columns left and right (the original makes the canvas squarish on purpose), so a context area may reach past the
picture. On that canvas the context box (the mask's bounding box) grows by ``context_expand_pixels`` /
``context_expand_factor`` / ``blend_pixels ** 1.5``; in ``ranged size`` and ``forced size`` it is widened to an
aspect ratio the size limits allow, pulled back over the picture where it fits, and a rescale factor is chosen
(the largest that fits the maximum sizes, at least the one that reaches the minimum sizes); ``free size`` uses
``rescale_factor`` as given. After the rescale the box is fitted to the size limits and, in ``free size`` and
``ranged size``, grown to a multiple of ``padding`` around its centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from visionatrix.errors import InvalidInput

MODES = ["ranged size", "forced size", "free size"]
PADDINGS = [8, 16, 32, 64, 128, 256, 512]
RESCALE_TOLERANCE = 0.001


@dataclass(frozen=True)
class CropSettings:
    """The InpaintCrop inputs that decide the box."""

    context_expand_pixels: int
    context_expand_factor: float
    blend_pixels: float
    mode: str
    force_width: int
    force_height: int
    rescale_factor: float
    padding: int
    min_width: int
    min_height: int
    max_width: int
    max_height: int


@dataclass(frozen=True)
class Extension:
    """The extended canvas: the picture (``width`` x ``height``) sits at ``(left, top)`` of ``canvas_width`` x
    ``canvas_height``."""

    width: int
    height: int
    left: int
    top: int

    @classmethod
    def around(cls, width: int, height: int) -> Extension:
        return cls(width, height, left=(height + 1) // 2, top=(width + 1) // 2)

    @property
    def canvas_width(self) -> int:
        return self.width + 2 * self.left

    @property
    def canvas_height(self) -> int:
        return self.height + 2 * self.top


@dataclass(frozen=True)
class CropPlan:
    """The crop ``[x_min, x_max] x [y_min, y_max]`` (inclusive) of the canvas scaled to ``scaled_width`` x
    ``scaled_height``; ``scale_x``/``scale_y`` are the effective factors (1.0: not rescaled)."""

    extension: Extension
    scaled_width: int
    scaled_height: int
    scale_x: float
    scale_y: float
    x_min: int
    x_max: int
    y_min: int
    y_max: int

    @property
    def rescaled(self) -> bool:
        return self.scaled_width != self.extension.canvas_width or self.scaled_height != self.extension.canvas_height

    @property
    def width(self) -> int:
        return self.x_max - self.x_min + 1

    @property
    def height(self) -> int:
        return self.y_max - self.y_min + 1


def check_settings(settings: CropSettings) -> CropSettings:
    """Refuse settings the box arithmetic cannot use, naming the input."""
    if settings.mode not in MODES:
        raise InvalidInput("mode", f"unknown mode {settings.mode!r}; expected one of {MODES}")
    if settings.padding not in PADDINGS:
        raise InvalidInput("padding", f"{settings.padding!r} is not one of {PADDINGS}")
    if settings.context_expand_factor < 1.0:
        raise InvalidInput("context_expand_factor", f"must be at least 1.0, got {settings.context_expand_factor}")
    if settings.mode == "free size" and settings.rescale_factor <= 0:
        raise InvalidInput("rescale_factor", f"must be positive, got {settings.rescale_factor}")
    if settings.mode == "forced size":
        for name in ("force_width", "force_height"):
            if getattr(settings, name) < 1:
                raise InvalidInput(name, "must be at least 1 in forced size mode")
    if settings.mode == "ranged size":
        for name in ("min_height", "max_width", "max_height"):
            if getattr(settings, name) < 1:
                raise InvalidInput(name, "must be at least 1 in ranged size mode")
        if settings.max_width < settings.min_width:
            raise InvalidInput("max_width", f"{settings.max_width} is less than min_width {settings.min_width}")
        if settings.max_height < settings.min_height:
            raise InvalidInput("max_height", f"{settings.max_height} is less than min_height {settings.min_height}")
    return settings


def plan_crop(extension: Extension, context_box: tuple[int, int, int, int] | None,
              settings: CropSettings) -> CropPlan:
    """The crop for a context bounding box ``(x_min, x_max, y_min, y_max)`` in picture pixels (None: the mask
    and context mask are empty, the whole picture is the context)."""
    ext = extension
    if context_box is None:
        context_box = (0, ext.width - 1, 0, ext.height - 1)
    x_min, x_max = context_box[0] + ext.left, context_box[1] + ext.left
    y_min, y_max = context_box[2] + ext.top, context_box[3] + ext.top
    width, height = ext.canvas_width, ext.canvas_height

    x_min, x_max = _grow(x_min, x_max, width, settings)
    y_min, y_max = _grow(y_min, y_max, height, settings)

    min_w, min_h, max_w, max_h = settings.min_width, settings.min_height, settings.max_width, settings.max_height
    if settings.mode == "forced size":
        min_w = max_w = settings.force_width
        min_h = max_h = settings.force_height
    factor = settings.rescale_factor
    if settings.mode != "free size":
        x_min, x_max, y_min, y_max = _fit_aspect(ext, (x_min, x_max, y_min, y_max), (min_w, min_h, max_w, max_h))
        x_size, y_size = x_max - x_min + 1, y_max - y_min + 1
        factor = max(min(min_w / x_size, min_h / y_size), min(max_w / x_size, max_h / y_size))

    scale_x = scale_y = 1.0
    if abs(factor - 1.0) > RESCALE_TOLERANCE:
        scaled_w, scaled_h = round(width * factor), round(height * factor)
        scale_x, scale_y = scaled_w / width, scaled_h / height
        # The original keeps the box's start and size (not its end) and ends one pixel further.
        target_x, target_y = int((x_max - x_min + 1) * scale_x), int((y_max - y_min + 1) * scale_y)
        x_min, y_min = round(x_min * scale_x), round(y_min * scale_y)
        x_max, y_max = x_min + target_x, y_min + target_y
        width, height = scaled_w, scaled_h

    if settings.mode != "free size":
        x_max = _fit_size(x_min, x_max, width, min_w, max_w)
        y_max = _fit_size(y_min, y_max, height, min_h, max_h)
    if settings.mode != "forced size" and settings.padding > 1:
        x_min, x_max = _pad(x_min, x_max, width, settings.padding)
        y_min, y_max = _pad(y_min, y_max, height, settings.padding)
    return CropPlan(ext, width, height, scale_x, scale_y, max(x_min, 0), min(x_max, width - 1), max(y_min, 0),
                    min(y_max, height - 1))


def _grow(low: int, high: int, limit: int, settings: CropSettings) -> tuple[int, int]:
    size = high - low + 1
    grow = round(max(size * (settings.context_expand_factor - 1), settings.context_expand_pixels,
                     settings.blend_pixels ** 1.5))
    return max(low - grow // 2, 0), min(high + grow // 2, limit - 1)


def _fit_aspect(ext: Extension, box: tuple[int, int, int, int], limits: tuple[int, int, int, int]
                ) -> tuple[int, int, int, int]:
    """Widen the box to the nearest aspect ratio the limits allow, then shift it back over the picture."""
    x_min, x_max, y_min, y_max = box
    min_w, min_h, max_w, max_h = limits
    current = (x_max - x_min + 1) / (y_max - y_min + 1)
    lowest, highest = min_w / max_h, max_w / min_h
    if current < lowest:
        target_w = min(x_max - x_min + 1, min_w)
        target = (target_w, int(target_w / lowest))
    elif current > highest:
        target_h = min(y_max - y_min + 1, max_h)
        target = (int(target_h * highest), target_h)
    else:
        return box
    box = _widen_to_aspect(box, ext.canvas_width, ext.canvas_height, target[0] / max(target[1], 1))
    return _shift_over_picture(box, ext)


def _widen_to_aspect(box: tuple[int, int, int, int], width: int, height: int, aspect: float
                     ) -> tuple[int, int, int, int]:
    x_min, x_max, y_min, y_max = box
    current_w, current_h = x_max - x_min + 1, y_max - y_min + 1
    if current_w / current_h < aspect:
        extend = int(current_h * aspect) - current_w
        return max(x_min - extend // 2, 0), min(x_max + extend // 2, width - 1), y_min, y_max
    extend = int(current_w / aspect) - current_h
    return x_min, x_max, max(y_min - extend // 2, 0), min(y_max + extend // 2, height - 1)


def _shift_over_picture(box: tuple[int, int, int, int], ext: Extension) -> tuple[int, int, int, int]:
    """Move the box (keeping its size) so it lies over the picture on each axis where it is not wider than it.
    Like the original, the picture's end bound is ``start + size`` (one past its last pixel)."""
    x_min, x_max, y_min, y_max = box
    x_end, y_end = ext.left + ext.width, ext.top + ext.height
    if ext.left <= x_min and x_end >= x_max and ext.top <= y_min and y_end >= y_max:
        return box
    x_min, x_max = _shift_into(x_min, x_max, ext.left, x_end)
    y_min, y_max = _shift_into(y_min, y_max, ext.top, y_end)
    return x_min, x_max, y_min, y_max


def _shift_into(low: int, high: int, start: int, end: int) -> tuple[int, int]:
    if high - low > end - start:
        return low, high
    if low < start:
        return start, high + start - low
    if high > end:
        return low - (high - end), end
    return low, high


def _fit_size(low: int, high: int, limit: int, smallest: int, largest: int) -> int:
    """The box's new end so its size lies in ``[smallest, largest]`` (growing stops at the canvas edge)."""
    size = high - low + 1
    if size < smallest:
        return min(high + smallest - size, limit - 1)
    if size > largest:
        return low + largest - 1
    return high


def _pad(low: int, high: int, limit: int, multiple: int) -> tuple[int, int]:
    """Grow ``[low, high]`` around its middle to a multiple of ``multiple`` pixels, kept inside ``[0, limit)``."""
    size = high - low + 1
    padded = math.ceil(size / multiple) * multiple
    new_low = max((low + high) // 2 - padded // 2, 0)
    new_high = new_low + padded - 1
    if new_high >= limit:
        new_high = limit - 1
        new_low = max(new_high - padded + 1, 0)
    return new_low, new_high
