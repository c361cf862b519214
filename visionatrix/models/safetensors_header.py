"""A safetensors file's header, read without torch: 8 bytes of little-endian header length, then that many bytes of
JSON (``{"__metadata__": {str: str}, "<tensor>": {"dtype", "shape", "data_offsets"}, ...}``)."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from visionatrix.errors import ModelFileError

MAX_HEADER_BYTES = 100 * 1024 * 1024
"""The format's own limit on the header (safetensors refuses longer ones)."""


def read_header(path: Path, *, name: str | None = None, max_bytes: int = MAX_HEADER_BYTES) -> dict[str, Any]:
    """The header of the safetensors file at ``path``; ``ModelFileError`` naming the file (as ``name``, default its
    file name: never a folder the caller may not show) and what is wrong."""
    shown = name or path.name
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ModelFileError(shown, "not a safetensors file: shorter than its 8-byte header length")
        (length,) = struct.unpack("<Q", prefix)
        if length < 2 or length > max_bytes:
            raise ModelFileError(shown, f"not a safetensors file: header length {length} is outside "
                                 f"2..{max_bytes} bytes")
        raw = handle.read(length)
    if len(raw) < length:
        raise ModelFileError(shown, "not a safetensors file: its header is cut short "
                             f"({len(raw)} of {length} bytes)")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ModelFileError(shown, f"not a safetensors file: its header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ModelFileError(shown, "not a safetensors file: its header is not a JSON object")
    return header


def read_metadata(path: Path, *, name: str | None = None) -> dict[str, Any] | None:
    """The ``__metadata__`` of the safetensors file at ``path`` (None when it has none)."""
    metadata = read_header(path, name=name).get("__metadata__")
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise ModelFileError(name or path.name, "its __metadata__ is not a JSON object")
    return metadata
