"""ComfyUI's three file folders inside our ``TaskStorage`` root, and the rules for naming a file in them.

ComfyUI addresses a file as ``{"filename", "subfolder", "type"}`` (comfyui_api.md §1.5). Ours::

    input   <root>/comfy/input/      uploads (``upload/image``, ``upload/mask``); LoadImage's list
    output  <root>/output/           every task's outputs: ``output/<task id>/<name>``
    temp    <root>/comfy/temp/       disposable uploads
            <root>/temp/             tasks' temporary outputs (previews): ``temp/<task id>/<name>``

With sign-in on, each signed-in user has their own input and temp folders, ``<root>/comfy/users/<name>/input`` and
``.../temp`` (``folders_for(request)``): one user's uploads are neither listed, shown nor loadable for another.
Outputs and temporary outputs stay in their tasks' folders, where the task's owner decides who may see them: a
``/view?type=temp`` whose subfolder starts with a task id looks there when the caller's temp folder lacks the file.

A name given by a client is split on ``/`` and each component must be non-empty, not hidden (dot-leading, which
also refuses ``.`` and ``..``), free of NUL, backslash and control characters, and at most 255 characters; the
resolved path (symlinks followed) must stay inside its folder. A subfolder that tries to leave the folder raises
:class:`PathEscape` (``/view`` answers 403 for it); any other bad name raises :class:`BadName` (400).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from visionatrix.errors import NotFound
from visionatrix.server.errors import BadRequest
from visionatrix.server.identity import identity
from visionatrix.server.services import SERVICES
from visionatrix.storage.names import MAX_PART_CHARS, is_hidden, is_image_name

TYPES = ("input", "output", "temp")
_ANNOTATIONS = tuple(f" [{kind}]" for kind in TYPES)


class BadName(BadRequest):
    """A file name or subfolder breaks the naming rules."""

    def __init__(self, what: str, value: str, why: str) -> None:
        self.field = what
        super().__init__("invalid_filename", f"{what} {value!r} is not acceptable: {why}", {"field": what})


class PathEscape(BadName):
    """A name that would lead out of its folder (``..``, an absolute path, a backslash, a symlink going out)."""


@dataclass(frozen=True)
class ComfyFolders:
    """The ComfyUI folders of one storage root, as one user sees them (``user`` None: sign-in off)."""

    root: Path
    user: str | None = None
    """A signed-in user's name (``users.name``: letters, digits, ``.``, ``_``, ``@``, ``-``; never ``..``)."""

    @property
    def _own(self) -> Path:
        return self.root / "comfy" if self.user is None else self.root / "comfy" / "users" / self.user

    @property
    def input_dir(self) -> Path:
        return self._own / "input"

    @property
    def output_dir(self) -> Path:
        return self.root / "output"

    @property
    def temp_dir(self) -> Path:
        return self._own / "temp"

    def folder(self, kind: str) -> Path:
        """The folder of ``kind`` (``input``, ``output`` or ``temp``); ``BadRequest`` for any other kind."""
        if kind == "input":
            return self.input_dir
        if kind == "output":
            return self.output_dir
        if kind == "temp":
            return self.temp_dir
        raise BadRequest("invalid_type", f"type {kind!r} is not one of {', '.join(TYPES)}", {"accepted": TYPES})

    def target(self, kind: str, subfolder: str, filename: str) -> Path:
        """Where ``subfolder/filename`` of ``kind`` lies (it may not exist yet); the checks of the module docstring.

        ``filename`` may itself hold ``/``-separated folders (a LoadImage value such as ``pasted/a.png``).
        """
        base = self.folder(kind)
        parts = split_parts("subfolder", subfolder, allow_empty=True) + split_parts("filename", filename)
        path = base.joinpath(*parts)
        _check_inside(base, path, f"{subfolder}/{filename}" if subfolder else filename)
        return path

    def existing(self, kind: str, subfolder: str, filename: str) -> Path:
        """The existing regular file ``subfolder/filename`` of ``kind``; ``NotFound`` when there is none."""
        path = self.target(kind, subfolder, filename)
        if not path.is_file():
            raise NotFound("file", f"{kind}/{subfolder}/{filename}" if subfolder else f"{kind}/{filename}")
        return path

    def resolve_annotated(self, value: str, default_type: str = "input") -> Path:
        """The existing file a LoadImage-style value names: ``sub/name.png``, or ``name.png [output]``."""
        name, kind = split_annotation(value)
        return self.existing(kind or default_type, "", name)

    def input_images(self) -> list[str]:
        """Relative names (``a.png``, ``sub/b.png``) of the image files in the input folder, sorted; hidden
        entries and symlinks are skipped. LoadImage's choice list."""
        return list_images(self.input_dir)


def folders_for(request: web.Request) -> ComfyFolders:
    """The ComfyUI folders of the caller: their own input and temp folders when signed in."""
    caller = identity(request)
    return ComfyFolders(request.app[SERVICES].storage.root, caller.name if caller.user_id is not None else None)


def split_parts(what: str, value: Any, *, allow_empty: bool = False) -> list[str]:
    """The ``/``-separated components of a client-given name, each checked; ``[]`` for ``""`` when allowed."""
    if not isinstance(value, str):
        raise BadName(what, str(value), "not a string")
    if value == "":
        if allow_empty:
            return []
        raise BadName(what, value, "empty")
    if value.startswith("/") or "\\" in value:
        raise PathEscape(what, value, "absolute paths and backslashes are refused")
    parts = value.split("/")
    if ".." in parts:
        raise PathEscape(what, value, "'..' leads out of the folder")
    for part in parts:
        if not part:
            raise BadName(what, value, "empty path component")
        if "\x00" in part or any(ord(char) < 32 or char == "\x7f" for char in part):
            raise BadName(what, value, "NUL or control character")
        if is_hidden(part):
            raise BadName(what, value, "hidden (dot-leading) names are refused")
        if len(part) > MAX_PART_CHARS:
            raise BadName(what, value, f"a component is longer than {MAX_PART_CHARS} characters")
    return parts


def split_annotation(value: str) -> tuple[str, str | None]:
    """``("name.png", "output")`` for ``"name.png [output]"``; ``(value, None)`` without an annotation."""
    for kind, suffix in zip(TYPES, _ANNOTATIONS, strict=True):
        if value.endswith(suffix):
            return value[: -len(suffix)], kind
    return value, None


def output_ref(task_id: int, name: str, kind: str = "output") -> dict[str, str]:
    """The ``{"filename", "subfolder", "type"}`` of a task's output ``name`` (``a.png`` or ``sub/a.png``), or of
    its temporary output (``kind`` ``temp``)."""
    folder, _, filename = name.rpartition("/")
    subfolder = f"{task_id}/{folder}" if folder else str(task_id)
    return {"filename": filename, "subfolder": subfolder, "type": kind}


def task_temp_file(root: Path, subfolder: str, filename: str) -> tuple[int, Path] | None:
    """``(task id, path)`` of an existing temporary output ``<root>/temp/<task id>/[sub/]filename`` named by a
    ``/view?type=temp`` query whose subfolder starts with a task id; None when it names none (the name checks of
    the module docstring apply)."""
    parts = split_parts("subfolder", subfolder, allow_empty=True)
    if not parts or not parts[0].isdigit():
        return None
    base = root / "temp"
    path = base.joinpath(*parts, *split_parts("filename", filename))
    _check_inside(base / parts[0], path, f"{subfolder}/{filename}")
    return (int(parts[0]), path) if path.is_file() else None


def list_images(base: Path) -> list[str]:
    """Relative names of the image files under ``base`` (any depth), sorted; none when it is missing."""
    if not base.is_dir():
        return []
    found: list[str] = []
    for folder, dirs, files in os.walk(base):
        here = Path(folder)
        dirs[:] = [d for d in dirs if not is_hidden(d)]  # os.walk does not follow symlinked folders
        prefix = here.relative_to(base).as_posix()
        for name in files:
            path = here / name
            if is_hidden(name) or path.is_symlink() or not is_image_name(name):
                continue
            found.append(name if prefix == "." else f"{prefix}/{name}")
    return sorted(found)


def _check_inside(base: Path, path: Path, shown: str) -> None:
    """``PathEscape`` when ``path``'s deepest existing ancestor (symlinks followed) lies outside ``base``."""
    real_base = base.resolve()
    probe = path
    while not probe.exists() and not probe.is_symlink() and probe != base:
        probe = probe.parent
    try:
        real = probe.resolve(strict=False)
    except (OSError, RuntimeError):  # a symlink loop
        raise PathEscape("path", shown, "it cannot be resolved") from None
    if not real.is_relative_to(real_base):
        raise PathEscape("path", shown, "it leads out of the folder")
