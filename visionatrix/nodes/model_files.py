"""Model files of a folder for loader nodes (every pack): the COMBO list, the path of a chosen name, a version for
IS_CHANGED. Torch-free."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from visionatrix.errors import InvalidInput
from visionatrix.models.folders import ModelFileList
from visionatrix.nodes import context


def files_of(folder: str) -> list[str]:
    """The files of ``folder`` as a ``ModelFileList`` (validation knows it lists model files)."""
    folders = context.current().model_folders
    return folders.list_files(folder) if folders is not None else ModelFileList(folder=folder)


def path_of(folder: str, name: Any, input_name: str) -> Path:
    """The file ``name`` in ``folder``; :class:`InvalidInput` naming the input and the folder's roots."""
    folders = context.current().model_folders
    found = folders.find(folder, str(name)) if folders is not None else None
    if found is None:
        where = ", ".join(str(root) for root in folders.roots(folder)) if folders is not None else "no models folder"
        raise InvalidInput(input_name, f"{name!r} is not in the {folder} folder ({where})")
    return Path(found)


def version_of(folder: str, name: Any, input_name: str) -> str | float:
    """The file's size and modification time (a replaced file is loaded again); NaN when it is missing."""
    try:
        stat = os.stat(path_of(folder, name, input_name))
    except (InvalidInput, OSError):
        return float("nan")
    return f"{stat.st_size}:{stat.st_mtime_ns}"
