"""Keeping node file access inside its folder: resolve a user-given relative name, list a folder's images."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from visionatrix.errors import InvalidInput
from visionatrix.storage.names import is_image_name


def resolve_inside(root: Path, name: object, input_name: str) -> Path:
    """``root / name`` resolved (symlinks followed); refuses absolute names, ``..`` and anything landing outside."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(input_name, "no file name given")
    relative = PurePosixPath(name)
    if "\x00" in name or relative.is_absolute() or ".." in relative.parts:
        raise InvalidInput(input_name, f"{name!r} is not a name inside the {root.name or root} folder")
    base = root.resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        raise InvalidInput(input_name, f"{name!r} leads outside the {root.name or root} folder")
    return target


def list_images(root: Path) -> list[str]:
    """The sorted names of the image files directly in ``root`` (hidden files skipped; none if it is missing)."""
    if not root.is_dir():
        return []
    names = (entry.name for entry in root.iterdir() if entry.is_file() and not entry.name.startswith("."))
    return sorted(name for name in names if is_image_name(name))
