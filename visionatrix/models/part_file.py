"""The ``<target>.part`` of a download on disk: its path, its lock, hashing what is there, appending to it on a
writer thread, and turning it into the final file.

``<target>.part.lock`` is held with ``flock`` while a download writes the part: a second process (or job) gets
``Conflict``; the kernel releases the lock when its holder dies, even by ``kill -9``, so a stale lock file never
blocks. :class:`PartWriter` writes and hashes on one thread of its own, so the event loop keeps reading the network
while the disk is busy.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import fcntl
import hashlib
import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from visionatrix.errors import Conflict

PART_SUFFIX = ".part"
LOCK_SUFFIX = ".part.lock"


def part_path(target: Path) -> Path:
    return target.with_name(target.name + PART_SUFFIX)


def lock_path(target: Path) -> Path:
    return target.with_name(target.name + LOCK_SUFFIX)


@contextlib.contextmanager
def part_lock(name: str, target: Path) -> Iterator[None]:
    """Hold ``<target>.part.lock``; Conflict when another process (or job) holds it. The file goes when released."""
    path = lock_path(target)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise Conflict(f"{name}: already downloading in another process ({target.name})") from None
            raise
        with contextlib.suppress(FileNotFoundError):
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        os.close(fd)  # its holder removed it between our open and flock: lock the new one
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def is_downloading(target: Path) -> bool:
    """Some process (this one included) holds the download lock of ``target``."""
    try:
        fd = os.open(lock_path(target), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def is_installed(target: Path, file_size: int | None) -> bool:
    """The final file is there with the catalog's size (any size when the catalog has none)."""
    try:
        size = target.stat().st_size
    except FileNotFoundError:
        return False
    return file_size is None or size == file_size


def hash_file(path: Path, chunk_bytes: int) -> tuple[Any, int]:
    """``(sha256 object, size)`` of what ``path`` holds (blocking: run it in a thread)."""
    hasher, size = hashlib.sha256(), 0
    with path.open("rb") as file:
        while block := file.read(chunk_bytes):
            hasher.update(block)
            size += len(block)
    return hasher, size


def commit(part: Path, target: Path) -> None:
    """fsync the part, rename it to ``target`` (atomic) and fsync the folder (blocking: run it in a thread)."""
    with part.open("rb+") as file:
        os.fsync(file.fileno())
    os.replace(part, target)
    directory = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class PartWriter:
    """Appends chunks to a part and feeds them to ``hasher`` on a thread of its own, in order; batches of about
    ``batch_bytes``, at most ``max_pending`` batches in flight. Leaving the ``async with`` block, on success or
    error or cancellation, writes every chunk handed over, so the part holds exactly the bytes given to it."""

    def __init__(self, path: Path, hasher: Any, *, batch_bytes: int, max_pending: int = 4) -> None:
        self._path, self._hasher = path, hasher
        self._batch_bytes, self._max_pending = batch_bytes, max_pending
        self._batch: list[bytes] = []
        self._batched = 0
        self._pending: deque[concurrent.futures.Future[None]] = deque()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._file: Any = None

    async def __aenter__(self) -> PartWriter:
        self._file = self._path.open("ab")
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="part-writer")
        return self

    async def write(self, chunk: bytes) -> None:
        self._batch.append(chunk)
        self._batched += len(chunk)
        if self._batched >= self._batch_bytes:
            self._submit()
            while self._pending and self._pending[0].done():  # finished batches need no wake-up of the loop
                self._pending.popleft().result()
            while len(self._pending) > self._max_pending:
                await asyncio.wrap_future(self._pending.popleft())

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._submit()
        pending, self._pending = list(self._pending), deque()
        try:
            if exc_type is None:
                for future in pending:
                    await asyncio.wrap_future(future)
        finally:  # on errors and cancellation: let the thread finish before the file closes
            concurrent.futures.wait(pending)
            assert self._pool is not None
            self._pool.shutdown()
            self._file.close()

    def _submit(self) -> None:
        if self._batch:
            assert self._pool is not None
            self._pending.append(self._pool.submit(self._write_batch, self._batch))
            self._batch, self._batched = [], 0

    def _write_batch(self, batch: list[bytes]) -> None:
        self._file.writelines(batch)
        for chunk in batch:
            self._hasher.update(chunk)
