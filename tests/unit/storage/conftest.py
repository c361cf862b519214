from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from visionatrix.storage import TaskStorage

LIMIT_BYTES = 1000


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "tasks_files"


@pytest.fixture
def storage(root: Path) -> TaskStorage:
    return TaskStorage(root, max_upload_bytes=LIMIT_BYTES)


@pytest.fixture
def chunks() -> Callable[..., AsyncIterator[bytes]]:
    """``chunks(b"a", b"b")``: an async iterator over the given pieces, like a request body."""

    async def produce(*pieces: bytes) -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    return produce
