"""What a run left in its output folder: the files a task's ``finish`` stores.

A run's temporary files (PreviewImage's images, any node's ``type: "temp"`` files) go to :func:`run_temp_dir`, a
hidden folder inside the output folder: never listed among the outputs, cleared with them when a task is run again,
and stored by ``finish`` as the task's files of kind ``temp``.
"""

from __future__ import annotations

from pathlib import Path

from visionatrix.executor import events
from visionatrix.storage.names import is_hidden

RUN_TEMP = ".temp"


def run_temp_dir(output_dir: Path) -> Path:
    """The folder a run's temporary files go to (the executor's ``temp_dir`` for that run)."""
    return Path(output_dir) / RUN_TEMP


def output_files(output_dir: Path, result: events.ExecutionResult) -> list[tuple[str, str | None]]:
    """``(name, node_id)`` of each file in the output folder (one subfolder deep; hidden names and symlinks left
    out, as storage does), tied to the output node that reported it."""
    return _tied(output_dir, dict((name, node) for node, name in result.output_files()))


def temp_files(output_dir: Path, result: events.ExecutionResult) -> list[tuple[str, str | None]]:
    """``(name, node_id)`` of each file in the run's temporary folder, tied to the node that reported it with
    ``type: "temp"``."""
    return _tied(run_temp_dir(output_dir), _reported(result, "temp"))


def _reported(result: events.ExecutionResult, folder_type: str) -> dict[str, str]:
    """``{relative name: node_id}`` of the files the nodes reported in their ``ui`` with ``type: folder_type``."""
    owners: dict[str, str] = {}
    for node_id, node_ui in result.ui.items():
        for items in node_ui.values():
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and item.get("type") == folder_type and "filename" in item:
                    owners["/".join(p for p in (item.get("subfolder") or "", item["filename"]) if p)] = node_id
    return owners


def _tied(folder: Path, owners: dict[str, str]) -> list[tuple[str, str | None]]:
    names: list[str] = []
    for entry in _visible(folder):
        if entry.is_file():
            names.append(entry.name)
        elif entry.is_dir():
            names.extend(f"{entry.name}/{inner.name}" for inner in _visible(entry) if inner.is_file())
    return [(name, owners.get(name)) for name in sorted(names)]


def _visible(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return [entry for entry in folder.iterdir() if not entry.is_symlink() and not is_hidden(entry.name)]
