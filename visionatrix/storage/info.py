"""What storage knows about a stored file: its size and checksum."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class FileInfo:
    size_bytes: int
    sha256: str  # lowercase hex


def file_info(path: Path) -> FileInfo:
    """Size and SHA-256 of the file at ``path``, read in blocks (never whole into memory)."""
    with path.open("rb") as stream:
        digest = hashlib.file_digest(stream, "sha256")
        size_bytes = stream.tell()
    return FileInfo(size_bytes=size_bytes, sha256=digest.hexdigest())
