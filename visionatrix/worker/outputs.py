"""What a run left in its output folder: the files a task's ``finish`` stores."""

from __future__ import annotations

from pathlib import Path

from visionatrix.executor import events
from visionatrix.storage.names import is_hidden


def output_files(output_dir: Path, result: events.ExecutionResult) -> list[tuple[str, str | None]]:
    """``(name, node_id)`` of each file in the output folder (one subfolder deep; hidden names and symlinks left
    out, as storage does), tied to the output node that reported it."""
    owners = {name: node_id for node_id, name in result.output_files()}
    names: list[str] = []
    for entry in _visible(output_dir):
        if entry.is_file():
            names.append(entry.name)
        elif entry.is_dir():
            names.extend(f"{entry.name}/{inner.name}" for inner in _visible(entry) if inner.is_file())
    return [(name, owners.get(name)) for name in sorted(names)]


def _visible(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [entry for entry in folder.iterdir() if not entry.is_symlink() and not is_hidden(entry.name)]
