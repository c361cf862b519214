"""File names: cleaning a client-supplied name, and the rules a stored file's relative name must follow.

A relative name is ``file`` or ``subfolder/file``: at most one subfolder, ``/`` as the only separator, no empty,
``.``, ``..`` or other hidden (dot-leading) component, no backslash, no NUL. Hidden names are reserved for storage's
own temporary files, so no task file ever has one.
"""

from __future__ import annotations

import mimetypes
import re
import unicodedata

MAX_NAME_CHARS = 128
"""Longest name :func:`safe_name` returns."""

MAX_PART_CHARS = 255
"""Longest component a relative name may have (the usual file-system limit)."""

_SEPARATORS = re.compile(r"[/\\]")
_UNSAFE_RUN = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,16}$")
_FALLBACK_STEM = "file"


def safe_name(name: str) -> str:
    """A safe file name made from a client-supplied one.

    Keeps the last path component only (``/`` and ``\\`` both separate), folds accents to ASCII, turns every run of
    characters outside ``A-Z a-z 0-9 . _ -`` into one ``_``, strips leading and trailing dots, underscores and dashes,
    keeps a short alphanumeric extension, and cuts the stem so the whole name has at most :data:`MAX_NAME_CHARS`
    characters. Never empty: a name with nothing usable left becomes ``file`` (plus its extension).
    """
    base = _SEPARATORS.split(name)[-1]
    folded = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    cleaned = _UNSAFE_RUN.sub("_", folded)
    match = _EXTENSION.search(cleaned)
    stem, extension = (cleaned[: match.start()], match.group()) if match else (cleaned, "")
    stem = stem.strip("._-")[: MAX_NAME_CHARS - len(extension)].rstrip("._-")
    return (stem or _FALLBACK_STEM) + extension


def relative_parts(name: str) -> tuple[str, ...]:
    """The components of a stored file's relative name; ``ValueError`` when ``name`` breaks the rules above."""
    if not isinstance(name, str) or not name:
        raise ValueError("empty file name")
    if "\x00" in name or "\\" in name:
        raise ValueError("NUL or backslash in file name")
    parts = tuple(name.split("/"))
    if len(parts) > 2:
        raise ValueError("more than one subfolder in file name")
    for part in parts:
        if not part or part.startswith(".") or len(part) > MAX_PART_CHARS:
            raise ValueError(f"bad component {part!r} in file name")
    return parts


def is_hidden(name: str) -> bool:
    """True for names storage never reports or serves (its temporary files among them)."""
    return name.startswith(".")


def is_image_name(name: str) -> bool:
    """Whether ``name``'s extension is an image type's."""
    kind, _ = mimetypes.guess_type(name)
    return kind is not None and kind.startswith("image/")
