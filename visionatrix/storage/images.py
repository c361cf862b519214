"""Checking that an uploaded file is an image of an acceptable size, without decoding it.

The pixel count is read from the header and compared with ``max_pixels`` before anything is decoded; PIL's own
``MAX_IMAGE_PIXELS`` guard (left at its default, never changed globally) stays as a second line.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image

from visionatrix.errors import InvalidInput, NotFound

IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
"""The formats accepted as input images (the JPEG reader also takes MPO, as phones write it)."""


def check_image(path: Path, max_pixels: int) -> tuple[int, int]:
    """``(width, height)`` of the image at ``path``.

    ``InvalidInput("image", ...)`` naming the file when it is not a readable image of one of
    :data:`IMAGE_FORMATS`, or has more than ``max_pixels`` pixels (checked on the header, before decoding).
    ``NotFound`` when there is no file at ``path``.
    """
    label = repr(path.name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides
            with Image.open(path, formats=IMAGE_FORMATS) as image:
                width, height = image.size
                if width <= 0 or height <= 0:
                    raise InvalidInput("image", f"{label} has no pixels ({width}x{height})")
                if width * height > max_pixels:
                    raise InvalidInput("image", f"{label} is {width}x{height}: more than {max_pixels} pixels")
                image.verify()
    except InvalidInput:
        raise
    except FileNotFoundError:
        raise NotFound("file", str(path)) from None
    except Image.DecompressionBombError:
        raise InvalidInput("image", f"{label} has more pixels than the image decoder allows") from None
    except Exception as exc:  # hostile bytes: PIL's decoders raise OSError, SyntaxError, IndexError, struct.error...
        raise InvalidInput("image", f"{label} is not a readable image ({', '.join(IMAGE_FORMATS)})") from exc
    return width, height
