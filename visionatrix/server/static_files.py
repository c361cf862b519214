"""Files served from a folder of static assets (our web UI, the graph editor's wheel), confined to that folder."""

from __future__ import annotations

from pathlib import Path


def confined_file(root: Path, relative: str) -> Path | None:
    """``root/relative`` when it is a path inside ``root`` (no ``..``, empty or ``.`` parts, no backslash or NUL, not
    absolute, no symlink out), else None. ``root`` must be resolved. The file may not exist."""
    if "\x00" in relative or "\\" in relative or relative.startswith("/"):
        return None
    parts = relative.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    path = root.joinpath(*parts)
    return path if path.resolve().is_relative_to(root) else None
