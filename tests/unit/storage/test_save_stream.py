from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from visionatrix.errors import TooLarge
from visionatrix.storage import FileInfo, TaskStorage

LIMIT_BYTES = 1000


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_save_stream_writes_all_chunks_and_reports_size_and_sha256(storage: TaskStorage, chunks):
    pieces = [b"a" * 300, b"", b"b" * 299, b"\x00\xff" * 10]
    dest = storage.input_dir(1) / "data.bin"

    info = await storage.save_stream(dest, chunks(*pieces))

    body = b"".join(pieces)
    assert dest.read_bytes() == body
    assert info == FileInfo(size_bytes=len(body), sha256=hashlib.sha256(body).hexdigest())
    assert listing(dest.parent) == ["data.bin"]


async def test_save_stream_accepts_a_file_of_exactly_the_limit(storage: TaskStorage, chunks):
    dest = storage.input_dir(1) / "full.bin"

    info = await storage.save_stream(dest, chunks(b"x" * 600, b"x" * (LIMIT_BYTES - 600)))

    assert info.size_bytes == LIMIT_BYTES == dest.stat().st_size


async def test_save_stream_of_an_empty_body_makes_an_empty_file(storage: TaskStorage, chunks):
    dest = storage.input_dir(1) / "empty.txt"

    info = await storage.save_stream(dest, chunks())

    assert dest.read_bytes() == b""
    assert info == FileInfo(0, hashlib.sha256(b"").hexdigest())


async def test_save_stream_refuses_one_byte_over_the_limit_and_leaves_nothing(storage: TaskStorage, chunks):
    folder = storage.input_dir(1)

    with pytest.raises(TooLarge) as caught:
        await storage.save_stream(folder / "big.bin", chunks(b"x" * 500, b"x" * (LIMIT_BYTES - 500 + 1)))

    assert caught.value.limit_bytes == LIMIT_BYTES
    assert "big.bin" in caught.value.message
    assert listing(folder) == []


async def test_save_stream_stops_reading_once_over_the_limit(storage: TaskStorage):
    pulled: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        while True:
            pulled.append(1)
            yield b"y" * 400

    with pytest.raises(TooLarge):
        await storage.save_stream(storage.input_dir(1) / "endless.bin", endless())

    assert len(pulled) == 3  # 400 + 400 + 400 > 1000: refused on the third chunk


async def test_a_refused_upload_keeps_the_older_file_at_the_destination(storage: TaskStorage, chunks):
    dest = storage.input_dir(1) / "image.png"
    dest.write_bytes(b"old")

    with pytest.raises(TooLarge):
        await storage.save_stream(dest, chunks(b"n" * (LIMIT_BYTES + 1)))

    assert dest.read_bytes() == b"old"
    assert listing(dest.parent) == ["image.png"]


async def test_a_body_that_breaks_off_leaves_no_file_behind(storage: TaskStorage):
    folder = storage.input_dir(1)

    async def broken() -> AsyncIterator[bytes]:
        yield b"start"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await storage.save_stream(folder / "part.bin", broken())

    assert listing(folder) == []


async def test_save_stream_writes_into_a_temp_file_beside_dest_and_renames_at_the_end(storage: TaskStorage):
    dest = storage.input_dir(1) / "late.bin"
    seen: list[tuple[bool, list[str]]] = []

    async def observed() -> AsyncIterator[bytes]:
        yield b"a" * 100
        seen.append((dest.exists(), [p.name for p in dest.parent.iterdir()]))
        yield b"b" * 100

    await storage.save_stream(dest, observed())

    [(dest_existed, names_mid_stream)] = seen
    assert not dest_existed
    assert len(names_mid_stream) == 1 and names_mid_stream[0].startswith(".late.bin.")
    assert listing(dest.parent) == ["late.bin"]


async def test_save_stream_replaces_an_existing_file(storage: TaskStorage, chunks):
    dest = storage.input_dir(1) / "a.txt"
    dest.write_bytes(b"old contents")

    await storage.save_stream(dest, chunks(b"new"))

    assert dest.read_bytes() == b"new"


async def test_saved_files_are_readable_by_other_users(storage: TaskStorage, chunks):
    dest = storage.input_dir(1) / "shared.bin"

    await storage.save_stream(dest, chunks(b"z"))

    assert stat.S_IMODE(dest.stat().st_mode) == 0o644


async def test_save_stream_creates_the_destination_folder(storage: TaskStorage, chunks):
    dest = storage.staging() / "sub" / "f.txt"

    await storage.save_stream(dest, chunks(b"ok"))

    assert dest.read_bytes() == b"ok"


@pytest.mark.parametrize("where", ["outside", "traversal", "hidden"])
async def test_save_stream_refuses_a_destination_outside_root_or_hidden(
    storage: TaskStorage, chunks, tmp_path: Path, where: str
):
    dest = {
        "outside": tmp_path / "elsewhere" / "x.bin",
        "traversal": storage.input_dir(1) / ".." / ".." / ".." / "x.bin",
        "hidden": storage.input_dir(1) / ".x.bin.abc.part",
    }[where]

    with pytest.raises(ValueError):
        await storage.save_stream(dest, chunks(b"data"))

    assert not os.path.lexists(dest)


def test_a_negative_upload_limit_is_refused(tmp_path: Path):
    with pytest.raises(ValueError):
        TaskStorage(tmp_path, max_upload_bytes=-1)
