from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import pytest

from visionatrix.storage import FileInfo, TaskStorage


def info(data: bytes) -> FileInfo:
    return FileInfo(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


def test_task_folders_are_created_on_demand_under_root(storage: TaskStorage, root: Path):
    assert not root.exists()

    assert storage.input_dir(5) == root.resolve() / "input" / "5"
    assert storage.output_dir(5) == root.resolve() / "output" / "5"
    assert (root / "input" / "5").is_dir() and (root / "output" / "5").is_dir()


def test_a_relative_root_is_anchored_at_creation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    storage = TaskStorage(Path("vix_tasks_files"), max_upload_bytes=10)
    monkeypatch.chdir("/")

    assert storage.output_dir(1) == tmp_path / "vix_tasks_files" / "output" / "1"


def test_describe_outputs_lists_files_and_one_subfolder_level_with_size_and_sha256(storage: TaskStorage):
    folder = storage.output_dir(4)
    (folder / "b.png").write_bytes(b"bbbb")
    (folder / "a.txt").write_bytes(b"")
    (folder / "grid").mkdir()
    (folder / "grid" / "0001.png").write_bytes(b"g1")

    assert storage.describe_outputs(4) == [
        ("a.txt", info(b"")),
        ("b.png", info(b"bbbb")),
        ("grid/0001.png", info(b"g1")),
    ]


def test_describe_outputs_leaves_out_deeper_files_and_logs_them(storage: TaskStorage, caplog):
    folder = storage.output_dir(4)
    (folder / "a" / "b").mkdir(parents=True)
    (folder / "a" / "b" / "deep.png").write_bytes(b"d")
    (folder / "top.png").write_bytes(b"t")

    with caplog.at_level(logging.WARNING, logger="visionatrix.storage.files"):
        described = storage.describe_outputs(4)

    assert [name for name, _ in described] == ["top.png"]
    assert "a/b" in caplog.text


def test_describe_outputs_leaves_out_symlinks_and_hidden_files(storage: TaskStorage, tmp_path: Path):
    folder = storage.output_dir(4)
    (folder / "real.png").write_bytes(b"r")
    (folder / ".real.png.abc.part").write_bytes(b"an unfinished save")
    (folder / ".hidden_dir").mkdir()
    (folder / ".hidden_dir" / "x.png").write_bytes(b"x")
    (tmp_path / "secret").write_bytes(b"s")
    (tmp_path / "secret_dir").mkdir()
    (tmp_path / "secret_dir" / "s.png").write_bytes(b"s")
    os.symlink(tmp_path / "secret", folder / "link.png")
    os.symlink(tmp_path / "secret_dir", folder / "linked_dir")

    assert storage.describe_outputs(4) == [("real.png", info(b"r"))]


def test_describe_outputs_of_a_task_without_outputs_is_empty(storage: TaskStorage):
    assert storage.describe_outputs(8) == []
    storage.output_dir(8)
    assert storage.describe_outputs(8) == []


def test_every_described_output_resolves(storage: TaskStorage):
    folder = storage.output_dir(4)
    (folder / "x.png").write_bytes(b"x")
    (folder / "sub").mkdir()
    (folder / "sub" / "y.png").write_bytes(b"y")

    for name, described in storage.describe_outputs(4):
        assert storage.resolve(4, "output", name).stat().st_size == described.size_bytes


def test_delete_task_removes_its_input_and_output_folders_only(storage: TaskStorage):
    for task_id in (1, 2):
        (storage.input_dir(task_id) / "in.png").write_bytes(b"i")
        (storage.output_dir(task_id) / "sub").mkdir()
        (storage.output_dir(task_id) / "sub" / "out.png").write_bytes(b"o")

    storage.delete_task(1)

    assert not (storage.root / "input" / "1").exists() and not (storage.root / "output" / "1").exists()
    assert (storage.root / "input" / "2" / "in.png").exists()
    assert (storage.root / "output" / "2" / "sub" / "out.png").exists()


def test_delete_task_without_folders_does_nothing(storage: TaskStorage):
    storage.delete_task(3)
    storage.output_dir(3)
    storage.delete_task(3)

    assert not (storage.root / "output" / "3").exists()


def test_delete_task_removes_a_symlinked_task_folder_but_not_its_target(storage: TaskStorage, tmp_path: Path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "keep.png").write_bytes(b"k")
    (storage.root / "output").mkdir(parents=True)
    os.symlink(target, storage.root / "output" / "6")

    storage.delete_task(6)

    assert not os.path.lexists(storage.root / "output" / "6")
    assert (target / "keep.png").read_bytes() == b"k"
