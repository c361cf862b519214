"""``resolve`` and ``destination`` keep every name a request gives inside ``root/<kind>/<task_id>/``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from visionatrix.errors import InvalidInput, NotFound
from visionatrix.storage import TaskStorage


@pytest.fixture
def planted(storage: TaskStorage, tmp_path: Path) -> Path:
    """Task 1's input folder, with real files at every place a hostile name could reach."""
    folder = storage.input_dir(1)
    (folder / "ok.png").write_bytes(b"png")
    (folder / "sub").mkdir()
    (folder / "sub" / "inner.png").write_bytes(b"inner")
    (folder / "sub" / "deeper").mkdir()
    (folder / "sub" / "deeper" / "deep.png").write_bytes(b"deep")
    (folder / ".hidden").write_bytes(b"hidden")
    (folder / "..\\x").write_bytes(b"a file whose name holds a backslash")
    (folder.parent / "x").write_bytes(b"in root/input, outside the task")  # reached by ../x
    (storage.root / "x").write_bytes(b"at the root")
    (storage.input_dir(2) / "other.png").write_bytes(b"another task's file")
    (storage.output_dir(1) / "out.png").write_bytes(b"an output")
    (tmp_path / "secret.txt").write_bytes(b"outside root")
    (tmp_path / "secret_dir").mkdir()
    (tmp_path / "secret_dir" / "s.txt").write_bytes(b"outside root")
    os.symlink(tmp_path / "secret.txt", folder / "link_out.txt")
    os.symlink(tmp_path / "secret_dir", folder / "dir_out")
    os.symlink(storage.input_dir(2) / "other.png", folder / "link_to_task_2.png")
    os.symlink(folder / "ok.png", folder / "link_in.png")
    os.symlink(folder / "loop", folder / "loop")
    return folder


def test_resolve_returns_a_file_of_the_task(storage: TaskStorage, planted: Path):
    assert storage.resolve(1, "input", "ok.png") == planted / "ok.png"
    assert storage.resolve(1, "input", "sub/inner.png").read_bytes() == b"inner"
    assert storage.resolve(1, "output", "out.png").read_bytes() == b"an output"


def test_resolve_follows_a_symlink_that_stays_in_the_task_folder(storage: TaskStorage, planted: Path):
    assert storage.resolve(1, "input", "link_in.png") == planted / "ok.png"


HOSTILE_NAMES = [
    "../x",
    "../../x",
    "../2/other.png",
    "/etc/passwd",
    str(Path(__file__).resolve()),
    "a/../../x",
    "sub/../../x",
    "sub/../ok.png",
    "./ok.png",
    "..\\x",
    "sub\\inner.png",
    "ok.png\x00.txt",
    "\x00",
    "link_out.txt",
    "dir_out/s.txt",
    "link_to_task_2.png",
    "loop",
    ".hidden",
    "..",
    ".",
    "",
    "sub",
    "sub/",
    "sub//inner.png",
    "/ok.png",
    "sub/deeper/deep.png",
    "missing.png",
    "%2e%2e/x",
    "~/x",
    "x" * 300,
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_resolve_refuses_a_name_that_leaves_the_task_folder_or_is_not_a_plain_file(
    storage: TaskStorage, planted: Path, name: str
):
    with pytest.raises(NotFound):
        storage.resolve(1, "input", name)


@pytest.mark.parametrize("kind", ["staging", "", "..", "input/../output", "INPUT"])
def test_resolve_refuses_an_unknown_kind(storage: TaskStorage, planted: Path, kind: str):
    with pytest.raises(NotFound):
        storage.resolve(1, kind, "ok.png")


def test_resolve_refuses_a_task_folder_that_is_a_symlink_out(storage: TaskStorage, tmp_path: Path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "f.png").write_bytes(b"outside")
    (storage.root / "output").mkdir(parents=True)
    os.symlink(tmp_path / "elsewhere", storage.root / "output" / "7")

    with pytest.raises(NotFound):
        storage.resolve(7, "output", "f.png")


def test_resolve_of_a_task_without_files_is_not_found(storage: TaskStorage):
    with pytest.raises(NotFound):
        storage.resolve(99, "output", "a.png")


@pytest.mark.parametrize("task_id", [-1, True, "1", 1.0])
def test_a_task_id_must_be_a_non_negative_integer(storage: TaskStorage, task_id):
    with pytest.raises(ValueError):
        storage.input_dir(task_id)


def test_destination_names_a_path_in_the_task_folder_and_creates_its_subfolder(storage: TaskStorage):
    dest = storage.destination(3, "output", "grid/0001.png")

    assert dest == storage.root / "output" / "3" / "grid" / "0001.png"
    assert dest.parent.is_dir() and not dest.exists()


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", "a/../../x", "..\\x", "a\x00b", ".tmp", "a/b/c", ""])
def test_destination_refuses_a_hostile_name(storage: TaskStorage, name: str):
    with pytest.raises(InvalidInput):
        storage.destination(3, "output", name)


def test_destination_refuses_a_subfolder_that_is_a_symlink_out(storage: TaskStorage, tmp_path: Path):
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", storage.output_dir(3) / "sub")

    with pytest.raises(InvalidInput):
        storage.destination(3, "output", "sub/f.png")


def test_destination_refuses_an_unknown_kind(storage: TaskStorage):
    with pytest.raises(InvalidInput):
        storage.destination(3, "staging", "f.png")
