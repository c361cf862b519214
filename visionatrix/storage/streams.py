"""Streaming a file to disk: into a temporary file beside the destination, with a size limit, then an atomic
rename. A failed or refused save leaves nothing behind, and an older file at the destination stays untouched."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any

from visionatrix.errors import TooLarge
from visionatrix.storage.info import FileInfo

FILE_MODE = 0o644


def temp_beside(dest: Path) -> tuple[int, Path]:
    """A new hidden temporary file in ``dest``'s folder (same file system, so the final rename is atomic)."""
    fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    return fd, Path(name)


def write_json_atomically(dest: Path, data: Any, *, indent: int = 1, sort_keys: bool = False,
                          fsync: bool = False) -> None:
    """Replace ``dest`` with ``data`` as JSON at once: a temporary file beside it, then a rename (``fsync`` first when
    asked), so a reader sees the old file or the new one, never half of one; the temporary file never stays."""
    fd, tmp = temp_beside(dest)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=indent, sort_keys=sort_keys, ensure_ascii=False)
            out.flush()
            os.fchmod(out.fileno(), FILE_MODE)
            if fsync:
                os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


async def write_stream(dest: Path, chunks: AsyncIterator[bytes], *, max_bytes: int) -> FileInfo:
    """Write ``chunks`` to ``dest``; ``TooLarge`` as soon as more than ``max_bytes`` arrive.

    Disk writes run in a thread, so a slow (network-mounted) folder does not stall the event loop.
    """
    fd, tmp = temp_beside(dest)
    digest = hashlib.sha256()
    size_bytes = 0
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in chunks:
                size_bytes += len(chunk)
                if size_bytes > max_bytes:
                    raise TooLarge(dest.name, max_bytes)
                await asyncio.to_thread(_write, out, digest.update, chunk)
            await asyncio.to_thread(_seal, out)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return FileInfo(size_bytes=size_bytes, sha256=digest.hexdigest())


def _write(out: IO[bytes], update: Callable[[bytes], None], chunk: bytes) -> None:
    update(chunk)
    out.write(chunk)


def _seal(out: IO[bytes]) -> None:
    out.flush()
    os.fchmod(out.fileno(), FILE_MODE)
    os.fsync(out.fileno())
