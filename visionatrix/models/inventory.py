"""What of the catalog is on disk: each model ``installed``, ``missing``, ``partial`` or ``corrupt``.

A model is looked for by its catalog ``filename`` in every root of each of its folders. Its state comes from the
file's size (against the catalog's ``file_size``) and from a hash recorded by :meth:`ModelInventory.verify` — the
only place whole files are hashed. Verified hashes are kept in ``models_dir/.vix_verified.json`` keyed by path,
with the size and mtime they were taken at, so a changed file is never judged by an old hash. Torch-free.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from visionatrix.errors import Conflict, ModelError
from visionatrix.models.catalog import CatalogModel, ModelsCatalog
from visionatrix.models.folders import PART_SUFFIX, ModelFolders
from visionatrix.storage import streams

VERIFIED_FILE = ".vix_verified.json"
HASH_CHUNK_BYTES = 1 << 20


class ModelState(StrEnum):
    INSTALLED = "installed"
    MISSING = "missing"
    PARTIAL = "partial"
    CORRUPT = "corrupt"


@dataclass
class ModelStatus:
    model: CatalogModel
    state: ModelState
    path: Path | None
    """The final file, or the ``.part`` of a partial download; None when missing."""
    bytes_on_disk: int
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the model's name, folder, filename, size, url, homepage and gated flag with its state,
        ``bytes_on_disk``, ``path`` (a string or None) and ``problem``."""
        model = self.model
        return {"name": model.name, "folder": model.folder, "filename": model.filename, "state": str(self.state),
                "file_size": model.file_size, "bytes_on_disk": self.bytes_on_disk, "url": model.url,
                "homepage": model.homepage, "gated": model.gated,
                "path": str(self.path) if self.path is not None else None, "problem": self.problem}


class ModelInventory:
    """The catalog's models as found in ``folders``; ``busy(name)`` says a download of it is running."""

    def __init__(self, folders: ModelFolders, catalog: ModelsCatalog, *,
                 busy: Callable[[str], bool] | None = None) -> None:
        self.folders = folders
        self.catalog = catalog
        self._busy = busy or (lambda name: False)
        self._records_key: tuple[int, int] | None = None
        self._records: dict[str, dict[str, Any]] = {}

    @property
    def verified_file(self) -> Path:
        return self.folders.models_dir / VERIFIED_FILE

    def locate(self, model: CatalogModel) -> tuple[Path, Path] | None:
        """``(file, root)`` of the model's final file, searching each of its folders in order."""
        for folder in model.folders:
            found = self.folders.find_in_root(folder, model.filename)
            if found is not None:
                return found
        return None

    def part_path(self, model: CatalogModel) -> Path:
        final = self.folders.install_path(model.folder, model.filename)
        return final.with_name(final.name + PART_SUFFIX)

    def status(self, name: str) -> ModelStatus:
        """The state of the catalog model ``name`` (``NotFound`` for a name not in the catalog)."""
        return self._status(self.catalog.get(name))

    def statuses(self) -> list[ModelStatus]:
        """Every catalog model's status, by name."""
        return [self._status(model) for model in self.catalog.models()]

    def present(self) -> list[str]:
        """Names of the installed catalog models (what a worker reports)."""
        return [status.model.name for status in self.statuses() if status.state == ModelState.INSTALLED]

    def _status(self, model: CatalogModel) -> ModelStatus:
        found = self.locate(model)
        if found is not None:
            return self._judge(model, found[0])
        part = self.part_path(model)
        with contextlib.suppress(OSError):
            return ModelStatus(model, ModelState.PARTIAL, part, part.stat().st_size)
        return ModelStatus(model, ModelState.MISSING, None, 0)

    def _judge(self, model: CatalogModel, path: Path) -> ModelStatus:
        stat = path.stat()
        if model.file_size is not None and stat.st_size != model.file_size:
            return ModelStatus(model, ModelState.CORRUPT, path, stat.st_size,
                               f"{stat.st_size} bytes, the catalog says {model.file_size}")
        recorded = self._recorded_hash(path, stat)
        if model.sha256 and recorded and recorded != model.sha256:
            return ModelStatus(model, ModelState.CORRUPT, path, stat.st_size,
                               f"sha256 {recorded} does not match the catalog's {model.sha256}")
        return ModelStatus(model, ModelState.INSTALLED, path, stat.st_size)

    # --- verification ----------------------------------------------------------------------------------------

    def verify(self, names: Sequence[str] | None = None) -> list[ModelStatus]:
        """Hash the file of each named model (default: every model with a file on disk) and record the result;
        the statuses after the check, by name. A model without a catalog hash keeps its state, with a problem
        saying it could not be checked."""
        models = self.catalog.models() if names is None else [self.catalog.get(name) for name in names]
        results = []
        for model in models:
            found = self.locate(model)
            if found is None:
                if names is not None:
                    results.append(self._status(model))
                continue
            status = self._judge(model, found[0])
            if model.file_size is not None and status.bytes_on_disk != model.file_size:
                pass  # the size is already wrong: no need to hash it
            elif model.sha256 is None:
                status.problem = "the catalog gives no sha256 to check it against"
            else:
                self._record(found[0], model)
                status = self._judge(model, found[0])
            results.append(status)
        return results

    def _record(self, path: Path, model: CatalogModel) -> None:
        before = path.stat()
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(HASH_CHUNK_BYTES):
                digest.update(chunk)
        after = path.stat()
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
            raise ModelError(f"model {model.name}: {path} changed while it was being hashed")
        records = dict(self._load_records())
        records[_key(path)] = {"size": after.st_size, "mtime_ns": after.st_mtime_ns, "sha256": digest.hexdigest()}
        self._save_records(records)

    def _recorded_hash(self, path: Path, stat: os.stat_result) -> str | None:
        record = self._load_records().get(_key(path))
        if record and record.get("size") == stat.st_size and record.get("mtime_ns") == stat.st_mtime_ns:
            return str(record.get("sha256"))
        return None

    def _load_records(self) -> dict[str, dict[str, Any]]:
        """The sidecar's records, read again only when it changed; an unreadable sidecar counts as empty."""
        try:
            stat = self.verified_file.stat()
        except OSError:
            return {}
        key = (stat.st_size, stat.st_mtime_ns)
        if key != self._records_key:
            try:
                data = json.loads(self.verified_file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                data = {}
            self._records = {str(k): v for k, v in data.items() if isinstance(v, dict)} \
                if isinstance(data, dict) else {}
            self._records_key = key
        return self._records

    def _save_records(self, records: dict[str, dict[str, Any]]) -> None:
        """Write the sidecar atomically (a temporary file in the same folder, then ``os.replace``)."""
        target = self.verified_file
        target.parent.mkdir(parents=True, exist_ok=True)
        streams.write_json_atomically(target, records, sort_keys=True)
        self._records_key = None

    # --- removal and orphans ---------------------------------------------------------------------------------

    def remove(self, name: str) -> list[Path]:
        """Delete the model's final file and its ``.part`` from ``models_dir``; the paths deleted. ``Conflict``
        while it downloads; :class:`ModelError` when the file lies in an external collection (an extra path)."""
        model = self.catalog.get(name)
        if self._busy(name):
            raise Conflict(f"model {name} is being downloaded; cancel the download first")
        found = self.locate(model)
        if found is not None and not self.folders.in_models_dir(found[1]):
            raise ModelError(f"model {name}: {found[0]} belongs to an external collection ({found[1]}, from the "
                             "extra model paths); Visionatrix does not delete files there")
        removed = []
        for path in ([found[0]] if found is not None else []) + [self.part_path(model)]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
        if found is not None and _key(found[0]) in self._load_records():
            records = dict(self._load_records())
            records.pop(_key(found[0]))
            self._save_records(records)
        return removed

    def orphans(self, needed_files: Iterable[Path]) -> list[Path]:
        """Model files under ``models_dir`` (never an extra path) that are not among ``needed_files``, sorted."""
        needed = {os.path.realpath(path) for path in needed_files}
        return [entry.path for entry in self.folders.entries("") if os.path.realpath(entry.path) not in needed]


def _key(path: Path) -> str:
    return str(path.absolute())
