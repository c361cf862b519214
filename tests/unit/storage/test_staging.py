from __future__ import annotations

from pathlib import Path

import pytest

from visionatrix.errors import NotFound
from visionatrix.storage import TaskStorage


def test_staging_gives_a_fresh_empty_folder_under_root_staging_each_time(storage: TaskStorage):
    first, second = storage.staging(), storage.staging()

    assert first != second
    for folder in (first, second):
        assert folder.parent == storage.root / "staging"
        assert folder.is_dir() and list(folder.iterdir()) == []


async def test_adopt_copies_the_staged_files_into_each_tasks_input_folder(storage: TaskStorage, chunks):
    staged = storage.staging()
    await storage.save_stream(staged / "a.png", chunks(b"A"))
    await storage.save_stream(staged / "b.txt", chunks(b"B"))

    for task_id in (11, 12):
        copied = storage.adopt(staged, task_id, ["a.png", "b.txt"])
        assert copied == [storage.input_dir(task_id) / "a.png", storage.input_dir(task_id) / "b.txt"]

    for task_id in (11, 12):
        folder = storage.input_dir(task_id)
        assert sorted(p.name for p in folder.iterdir()) == ["a.png", "b.txt"]
        assert (folder / "a.png").read_bytes() == b"A" and (folder / "b.txt").read_bytes() == b"B"
    assert sorted(p.name for p in staged.iterdir()) == ["a.png", "b.txt"]  # until discard


def test_adopted_files_share_the_staged_copy_and_outlive_it_and_each_other(storage: TaskStorage):
    staged = storage.staging()
    (staged / "a.png").write_bytes(b"A")
    for task_id in (1, 2):
        storage.adopt(staged, task_id, ["a.png"])
    first, second = storage.input_dir(1) / "a.png", storage.input_dir(2) / "a.png"
    assert first.stat().st_ino == second.stat().st_ino == (staged / "a.png").stat().st_ino
    assert oct(first.stat().st_mode & 0o777) == "0o644"

    storage.discard(staged)
    storage.delete_task(1)

    assert not first.exists() and second.read_bytes() == b"A" and second.stat().st_nlink == 1


def test_adopt_copies_where_a_link_is_impossible(storage: TaskStorage, monkeypatch: pytest.MonkeyPatch):
    staged = storage.staging()
    (staged / "a.png").write_bytes(b"A")

    def cross_device(source: object, dest: object) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr("visionatrix.storage.files.os.link", cross_device)
    [placed] = storage.adopt(staged, 1, ["a.png"])

    assert placed.read_bytes() == b"A" and placed.stat().st_ino != (staged / "a.png").stat().st_ino
    assert list(storage.input_dir(1).iterdir()) == [placed]  # no temporary file left


def test_adopt_copies_only_the_names_given(storage: TaskStorage):
    staged = storage.staging()
    (staged / "a.png").write_bytes(b"A")
    (staged / "unrelated.png").write_bytes(b"U")

    storage.adopt(staged, 1, ["a.png"])

    assert [p.name for p in storage.input_dir(1).iterdir()] == ["a.png"]


@pytest.mark.parametrize("bad", ["missing.png", "../a.png", "/etc/passwd", "link.png", ".a.png.x.part"])
def test_adopt_with_a_bad_name_copies_nothing(storage: TaskStorage, tmp_path: Path, bad: str):
    staged = storage.staging()
    (staged / "a.png").write_bytes(b"A")
    (staged / ".a.png.x.part").write_bytes(b"temp")
    (tmp_path / "secret").write_bytes(b"secret")
    (staged / "link.png").symlink_to(tmp_path / "secret")

    with pytest.raises(NotFound):
        storage.adopt(staged, 1, ["a.png", bad])

    assert list(storage.input_dir(1).iterdir()) == []


def test_discard_removes_the_staging_folder_and_is_quiet_when_it_is_gone(storage: TaskStorage):
    staged = storage.staging()
    (staged / "a.png").write_bytes(b"A")

    storage.discard(staged)
    storage.discard(staged)

    assert not staged.exists()
    assert (storage.root / "staging").is_dir()


def test_discard_leaves_other_staging_folders_alone(storage: TaskStorage):
    kept, dropped = storage.staging(), storage.staging()
    (kept / "a.png").write_bytes(b"A")

    storage.discard(dropped)

    assert (kept / "a.png").read_bytes() == b"A"


def test_discard_refuses_anything_but_a_staging_folder(storage: TaskStorage, tmp_path: Path):
    victim = tmp_path / "precious"
    victim.mkdir()
    (victim / "f").write_bytes(b"keep me")
    input_folder = storage.input_dir(1)
    (input_folder / "f").write_bytes(b"keep me too")

    for path in (victim, input_folder, storage.root / "staging", storage.root, storage.staging() / ".." / ".."):
        with pytest.raises(ValueError):
            storage.discard(path)

    assert (victim / "f").read_bytes() == b"keep me"
    assert (input_folder / "f").read_bytes() == b"keep me too"


def test_adopt_refuses_a_folder_that_is_not_from_staging(storage: TaskStorage, tmp_path: Path):
    (tmp_path / "a.png").write_bytes(b"A")

    with pytest.raises(ValueError):
        storage.adopt(tmp_path, 1, ["a.png"])
