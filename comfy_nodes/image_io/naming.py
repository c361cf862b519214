"""Where a saved image goes: ComfyUI's ``<prefix>_<counter:05>_.png`` naming inside an output folder.

The prefix may name a subfolder (``portraits/face``) and carry tokens (``%width%``, ``%height%``, ``%year%``,
``%month%``, ``%day%``, ``%hour%``, ``%minute%``, ``%second%``). The counter continues after the highest one
already used for that prefix in that folder. Prefixes leading outside the folder are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath

from visionatrix.errors import InvalidInput

PREFIX_INPUT = "filename_prefix"


@dataclass(frozen=True)
class SaveTarget:
    folder: Path
    name: str
    subfolder: str

    def filename(self, counter: int) -> str:
        return f"{self.name}_{counter:05}_.png"


def expand_tokens(prefix: str, width: int, height: int, now: datetime) -> str:
    tokens = {
        "%width%": str(width),
        "%height%": str(height),
        "%year%": f"{now.year:04}",
        "%month%": f"{now.month:02}",
        "%day%": f"{now.day:02}",
        "%hour%": f"{now.hour:02}",
        "%minute%": f"{now.minute:02}",
        "%second%": f"{now.second:02}",
    }
    for token, value in tokens.items():
        prefix = prefix.replace(token, value)
    return prefix


def plan_target(root: Path, prefix: str) -> SaveTarget:
    """The folder (inside ``root``), file name stem and subfolder for an expanded ``prefix``."""
    relative = PurePosixPath(prefix)
    if not prefix or "\x00" in prefix or relative.is_absolute() or ".." in relative.parts:
        raise InvalidInput(PREFIX_INPUT, f"{prefix!r} is not a name inside the output folder")
    if prefix.endswith("/") or relative.name in ("", "."):
        raise InvalidInput(PREFIX_INPUT, f"{prefix!r} has no file name after its folder")
    base = root.resolve()
    folder = (base / relative.parent).resolve()
    if not folder.is_relative_to(base):
        raise InvalidInput(PREFIX_INPUT, f"{prefix!r} leads outside the output folder")
    subfolder = folder.relative_to(base).as_posix()
    return SaveTarget(folder=folder, name=relative.name, subfolder="" if subfolder == "." else subfolder)


def next_counter(target: SaveTarget) -> int:
    """One more than the highest counter of ``<name>_<digits>_...`` files in the folder (1 when none)."""
    if not target.folder.is_dir():
        return 1
    pattern = re.compile(rf"{re.escape(target.name)}_(\d+)_")
    counters = (pattern.match(entry.name) for entry in target.folder.iterdir())
    return max((int(match[1]) for match in counters if match), default=0) + 1
