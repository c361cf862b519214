"""``TaskStorage``: where the files of each task live, and the only way the rest of Visionatrix reaches them.

Layout under ``root`` (``TASKS_FILES_DIR``)::

    input/<task_id>/<name>      files a task reads (uploads, adopted from staging)
    output/<task_id>/<name>     files a task wrote (``<name>`` may hold one subfolder)
    temp/<task_id>/<name>       temporary files a task wrote (previews): removed with the task, or sooner when old
    staging/<random>/<name>     uploads received before their task exists

Every name that comes from outside goes through :func:`visionatrix.storage.names.relative_parts` and is then
resolved (symlinks followed) and confined to its task's folder.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path

from visionatrix.errors import InvalidInput, NotFound
from visionatrix.storage import images, streams
from visionatrix.storage import names as naming
from visionatrix.storage.info import FileInfo, file_info
from visionatrix.storage.names import is_hidden, relative_parts

log = logging.getLogger(__name__)

KINDS = ("input", "output", "temp")
STAGING = "staging"


class TaskStorage:
    """Task files under ``root``; uploads above ``max_upload_bytes`` are refused."""

    check_image = staticmethod(images.check_image)
    safe_name = staticmethod(naming.safe_name)

    def __init__(self, root: Path, *, max_upload_bytes: int) -> None:
        if max_upload_bytes < 0:
            raise ValueError("max_upload_bytes must not be negative")
        self.root = Path(root).resolve()
        self.max_upload_bytes = max_upload_bytes

    # -- layout ------------------------------------------------------------------------------------------------

    def input_dir(self, task_id: int) -> Path:
        """``root/input/<task_id>/``, created when missing."""
        return self._ensure(self._task_dir("input", task_id))

    def output_dir(self, task_id: int) -> Path:
        """``root/output/<task_id>/``, created when missing."""
        return self._ensure(self._task_dir("output", task_id))

    def temp_dir(self, task_id: int) -> Path:
        """``root/temp/<task_id>/``, created when missing."""
        return self._ensure(self._task_dir("temp", task_id))

    def resolve(self, task_id: int, kind: str, name: str) -> Path:
        """The existing regular file ``name`` of the task's ``kind`` folder.

        ``NotFound`` for an unknown kind, a name that breaks the naming rules (``..``, absolute, backslash, NUL,
        hidden, more than one subfolder), a missing file or folder, or a path that leaves ``root/<kind>/<id>/``
        once symlinks are followed.
        """
        missing = NotFound("file", f"{kind}/{task_id}/{name}")
        if kind not in KINDS:
            raise missing
        try:
            parts = relative_parts(name)
        except ValueError:
            raise missing from None
        base = self._task_dir(kind, task_id)
        try:
            path = base.joinpath(*parts).resolve(strict=True)
        except (OSError, RuntimeError):  # missing, a symlink loop, a name too long
            raise missing from None
        if not path.is_relative_to(base) or not path.is_file():
            raise missing
        return path

    def destination(self, task_id: int, kind: str, name: str) -> Path:
        """Where a file ``name`` of the task's ``kind`` folder is to be written (with :meth:`save_stream`).

        The folder and the subfolder are created; ``InvalidInput("name", ...)`` for an unknown kind, a name that
        breaks the naming rules, or a subfolder that leads out of the task's folder.
        """
        if kind not in KINDS:
            raise InvalidInput("name", f"unknown file kind {kind!r}")
        try:
            parts = relative_parts(name)
        except ValueError as exc:
            raise InvalidInput("name", f"{name!r} is not an acceptable file name: {exc}") from None
        base = self._ensure(self._task_dir(kind, task_id))
        folder = self._ensure(base.joinpath(*parts[:-1]))
        if not folder.resolve(strict=True).is_relative_to(base):
            raise InvalidInput("name", f"{name!r} leads out of the task's folder")
        return folder / parts[-1]

    # -- writing -----------------------------------------------------------------------------------------------

    async def save_stream(self, dest: Path, chunks: AsyncIterator[bytes], *,
                          accept: Callable[[FileInfo], Awaitable[None]] | None = None) -> FileInfo:
        """Stream ``chunks`` into ``dest`` (a path inside ``root``; its folder is created).

        The bytes go to a hidden temporary file beside ``dest``, which is renamed onto ``dest`` at the end (an
        older ``dest`` is replaced at once); past ``max_upload_bytes`` the save stops with ``TooLarge``. ``accept``,
        when given, sees the received file's size and digest before the rename and refuses it by raising. A
        refused or failed save leaves no file behind and any older ``dest`` untouched. ``ValueError`` when ``dest``
        lies outside ``root`` or has a hidden name.
        """
        dest = Path(dest)
        if not dest.parent.resolve().is_relative_to(self.root) or not dest.name or is_hidden(dest.name):
            raise ValueError(f"{dest} is not a task file path under {self.root}")
        self._ensure(dest.parent)
        if accept is None:
            return await streams.write_stream(dest, chunks, max_bytes=self.max_upload_bytes)
        fd, held = streams.temp_beside(dest)  # hidden, so never listed or served while it waits for ``accept``
        os.close(fd)
        try:
            info = await streams.write_stream(held, chunks, max_bytes=self.max_upload_bytes)
            await accept(info)
            os.replace(held, dest)
        except BaseException:
            held.unlink(missing_ok=True)
            raise
        return info

    # -- staging -----------------------------------------------------------------------------------------------

    def staging(self) -> Path:
        """A fresh, empty, uniquely named folder under ``root/staging/``."""
        folder = self._ensure(self.root / STAGING) / uuid.uuid4().hex
        folder.mkdir()
        return folder

    def adopt(self, staged: Path, task_id: int, names: Iterable[str]) -> list[Path]:
        """Place the files ``names`` of the staging folder ``staged`` into ``input_dir(task_id)``.

        Each file is a hard link to the staged one, so the tasks of one request (``count``) share one stored copy
        on disk; where a link is impossible (another file system, a file system without links, the link limit)
        it is copied. Deleting one task's folder removes only its own link. Inputs are never written to in place.
        All or nothing: each file goes through a temporary name and a rename, and when one name is missing or
        breaks the naming rules (``NotFound``) the files this call already placed are removed. A file of the same
        name in the input folder is replaced. The staging folder stays until :meth:`discard`.
        """
        source = self._staging_folder(staged)
        target = self.input_dir(task_id)
        copied: list[Path] = []
        try:
            for name in names:
                copied.append(_link_atomic(self._staged_file(source, name), target, name))
        except BaseException:
            for path in copied:
                path.unlink(missing_ok=True)
            raise
        return copied

    def discard(self, staged: Path) -> None:
        """Remove the staging folder ``staged`` and its files; nothing happens when it is already gone."""
        folder = self._staging_folder(staged)
        if folder.is_symlink():
            folder.unlink()
        elif folder.exists():
            shutil.rmtree(folder)

    # -- reading and cleaning up -------------------------------------------------------------------------------

    def describe_outputs(self, task_id: int, kind: str = "output") -> list[tuple[str, FileInfo]]:
        """``(relative name, FileInfo)`` of each file in ``<kind>/<task_id>/`` (``output`` or ``temp``), sorted.

        Files directly in the folder and in its subfolders (one level) count; deeper files are logged and left
        out, as are symlinks and hidden names (temporary files among them). A missing folder gives ``[]``.
        """
        if kind not in ("output", "temp"):
            raise ValueError(f"no outputs of kind {kind!r}")
        base = self._task_dir(kind, task_id)
        if base.is_symlink() or not base.is_dir():
            return []
        return [(name, file_info(path)) for name, path in sorted(_output_files(base, task_id))]

    def delete_task(self, task_id: int) -> None:
        """Remove ``input/<task_id>/``, ``output/<task_id>/`` and ``temp/<task_id>/``; a missing folder is fine."""
        for kind in KINDS:
            self._remove(self._task_dir(kind, task_id))

    def keep_temps(self, task_id: int, folder: Path) -> None:
        """Make ``folder`` (a run's temporary folder inside ``root``) the task's ``temp/<task_id>/``, replacing an
        earlier run's; it is moved, not copied. Nothing happens when ``folder`` is missing."""
        folder = Path(folder)
        if folder.is_symlink() or not folder.is_dir():
            return
        if not folder.resolve().is_relative_to(self.root):
            raise ValueError(f"{folder} is not a folder under {self.root}")
        target = self._task_dir("temp", task_id)
        self._remove(target)
        self._ensure(target.parent)
        os.replace(folder, target)

    def delete_temps(self, task_id: int) -> None:
        """Remove ``temp/<task_id>/`` only (old previews); a missing folder is fine."""
        self._remove(self._task_dir("temp", task_id))

    @staticmethod
    def _remove(folder: Path) -> None:
        if folder.is_symlink():
            folder.unlink()
        elif folder.exists():
            shutil.rmtree(folder)

    # -- helpers -----------------------------------------------------------------------------------------------

    def _task_dir(self, kind: str, task_id: int) -> Path:
        if isinstance(task_id, bool) or not isinstance(task_id, int) or task_id < 0:
            raise ValueError(f"a task id is a non-negative integer, not {task_id!r}")
        return (self.root / kind).resolve() / str(task_id)

    def _staging_folder(self, staged: Path) -> Path:
        staged = Path(staged)
        if staged.parent.resolve() != (self.root / STAGING).resolve() or is_hidden(staged.name):
            raise ValueError(f"{staged} is not a staging folder of {self.root}")
        return staged.parent.resolve() / staged.name

    @staticmethod
    def _staged_file(source: Path, name: str) -> Path:
        missing = NotFound("staged file", name)
        try:
            parts = relative_parts(name)
        except ValueError:
            raise missing from None
        path = source.joinpath(*parts)
        if path.is_symlink() or not path.is_file():
            raise missing
        return path

    @staticmethod
    def _ensure(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        return folder


def _link_atomic(source: Path, target_dir: Path, name: str) -> Path:
    """``source`` hard-linked (else copied) to ``name`` in ``target_dir``, through a temporary name."""
    dest = target_dir.joinpath(*relative_parts(name))
    dest.parent.mkdir(exist_ok=True)
    fd, tmp = streams.temp_beside(dest)
    os.close(fd)
    try:
        try:
            tmp.unlink()
            if os.stat(source).st_mode & 0o777 != streams.FILE_MODE:
                os.chmod(source, streams.FILE_MODE)
            os.link(source, tmp)
        except OSError:  # EXDEV, EPERM, EMLINK, ENOTSUP...: a copy instead
            shutil.copyfile(source, tmp)
            os.chmod(tmp, streams.FILE_MODE)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def _output_files(base: Path, task_id: int) -> Iterator[tuple[str, Path]]:
    for entry in _visible(base):
        if entry.is_file():
            yield entry.name, entry
        elif entry.is_dir():
            for inner in _visible(entry):
                if inner.is_file():
                    yield f"{entry.name}/{inner.name}", inner
                elif inner.is_dir():
                    log.warning(
                        "task %s: output folder %s/%s is nested too deep; its files are not recorded",
                        task_id,
                        entry.name,
                        inner.name,
                    )


def _visible(folder: Path) -> Iterator[Path]:
    """Entries of ``folder`` that are neither symlinks nor hidden."""
    for entry in folder.iterdir():
        if not entry.is_symlink() and not is_hidden(entry.name):
            yield entry
