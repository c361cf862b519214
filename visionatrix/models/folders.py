"""Where model files live: ``VIX_MODELS_DIR`` with ComfyUI's folder names, plus extra roots from
``VIX_EXTRA_MODEL_PATHS``.

A folder (``checkpoints``, ``loras``, ...) has one or more roots: ``models_dir/<canonical name>``, then
``models_dir/<legacy alias>`` (``unet``, ``clip``), then the extra paths given for either name. A file is named
relative to its root with ``/`` separators (``sd/base.safetensors``); the first root holding a name wins.

Symlinks inside roots are followed, but a name never answers a path that resolves outside every root (a root that
is itself a symlink counts as its target). Listings are cached per root, keyed by the mtimes of the directories
walked, so listing a large collection again costs one ``stat`` per directory. Torch-free.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from visionatrix.errors import ModelError

FOLDER_ALIASES = {"unet": "diffusion_models", "clip": "text_encoders"}
"""Legacy folder name -> canonical name (ComfyUI's ``map_legacy``)."""
STANDARD_FOLDERS = ("checkpoints", "diffusion_models", "text_encoders", "vae", "loras", "controlnet",
                    "upscale_models", "clip_vision", "style_models", "embeddings", "diffusers", "vae_approx",
                    "gligen", "hypernetworks", "photomaker", "ipadapter", "instantid", "pulid", "classifiers",
                    "model_patches", "audio_encoders", "latent_upscale_models")
MODEL_EXTENSIONS = (".safetensors", ".ckpt", ".pt", ".pth", ".pt2", ".bin", ".sft", ".gguf", ".onnx")
PART_SUFFIX = ".part"
_Listing = tuple[dict[str, int], list[tuple[str, Path]]]
"""A cached walk of one root: the mtime of every directory walked, and the files found."""


@dataclass(frozen=True)
class ModelFile:
    """One listed file: its name relative to the root, which root (index into ``roots(folder)``) and its path."""

    name: str
    root_index: int
    path: Path


class ModelFileList(list[str]):
    """The files of a model folder, as a node lists them for a COMBO input: validation knows it for a list of model
    files (checked only where the graph runs, ``NodeContext.check_model_files``)."""

    def __init__(self, names: Sequence[str] = (), *, folder: str) -> None:
        super().__init__(names)
        self.folder = folder


def safe_name(name: str) -> PurePosixPath | None:
    """``name`` as a relative ``/``-separated path, or None when it could escape its root: empty, absolute, a
    ``..`` part, a backslash, a NUL, a drive letter or a hidden part."""
    if not name or "\x00" in name or "\\" in name or name.startswith("/") or ":" in name.split("/")[0]:
        return None
    parts = name.split("/")
    if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
        return None
    return PurePosixPath(*parts)


class ModelFolders:
    """The model folders of one process: ``models_dir`` plus extra roots per folder."""

    def __init__(self, models_dir: Path, extra: Mapping[str, Sequence[Path]] | None = None) -> None:
        self.models_dir = Path(models_dir)
        self._extra: dict[str, list[Path]] = {}
        self._extensions: dict[str, frozenset[str]] = {}
        self._cache: dict[tuple[Path, frozenset[str], tuple[str, ...]], _Listing] = {}
        self._lock = threading.Lock()
        for folder, paths in (extra or {}).items():
            for path in paths:
                self.add_path(folder, Path(path))

    # --- names and roots ---------------------------------------------------------------------------------------

    def canonical(self, folder: str) -> str:
        """``unet`` -> ``diffusion_models``, ``clip`` -> ``text_encoders``; other names unchanged."""
        return FOLDER_ALIASES.get(folder, folder)

    def _legacy(self, canonical: str) -> list[str]:
        return [old for old, new in FOLDER_ALIASES.items() if new == canonical]

    def roots(self, folder: str) -> list[Path]:
        """Where ``folder``'s files may be, in lookup order (``""``: ``models_dir`` itself)."""
        if not folder:
            return [self.models_dir]
        if safe_name(folder) is None or "/" in folder:
            return []
        name = self.canonical(folder)
        names = [name, *self._legacy(name)]
        roots = [self.models_dir / each for each in names]
        for each in names:
            roots += [path for path in self._extra.get(each, ()) if path not in roots]
        return roots

    def extra_roots(self) -> list[Path]:
        """Every root that does not lie in ``models_dir`` (an external collection)."""
        return [path for paths in self._extra.values() for path in paths]

    def add_path(self, folder: str, path: Path, *, first: bool = False) -> None:
        """Add a root to ``folder`` (``folder_paths.add_model_folder_path``), after the other extra roots or, with
        ``first``, before them (``models_dir``'s own roots always come first); adding one twice does nothing."""
        if safe_name(folder) is None or "/" in folder:
            raise ModelError(f"model folder name {folder!r} is not a plain folder name")
        name = self.canonical(folder)
        path = Path(path)
        paths = self._extra.setdefault(name, [])
        if path in paths or path in [self.models_dir / each for each in (name, *self._legacy(name))]:
            return
        paths.insert(0, path) if first else paths.append(path)

    def set_extensions(self, folder: str, extensions: Sequence[str]) -> None:
        """The file extensions ``folder`` lists (default: ``MODEL_EXTENSIONS``)."""
        self._extensions[self.canonical(folder)] = frozenset(ext.lower() for ext in extensions)

    def extensions(self, folder: str) -> frozenset[str]:
        return self._extensions.get(self.canonical(folder), frozenset(MODEL_EXTENSIONS))

    def folder_names(self) -> list[str]:
        """The standard folders, then the other subfolders of ``models_dir`` and the extra folders, sorted."""
        others: set[str] = set(self._extra)
        try:
            with os.scandir(self.models_dir) as entries:
                others.update(self.canonical(entry.name) for entry in entries
                              if not entry.name.startswith(".") and entry.is_dir())
        except OSError:
            pass
        return list(STANDARD_FOLDERS) + sorted(others - set(STANDARD_FOLDERS))

    def folder_names_and_paths(self) -> dict[str, tuple[list[str], set[str]]]:
        """ComfyUI's ``folder_paths.folder_names_and_paths``: ``{folder: ([root, ...], {extension, ...})}``."""
        return {name: ([str(root) for root in self.roots(name)], set(self.extensions(name)))
                for name in self.folder_names()}

    # --- files -------------------------------------------------------------------------------------------------

    def list_files(self, folder: str) -> ModelFileList:
        """Model files of ``folder`` at any depth, relative and ``/``-separated, union of its roots, sorted."""
        return ModelFileList(sorted({entry.name for entry in self.entries(folder)}), folder=folder)

    def entries(self, folder: str) -> list[ModelFile]:
        """Every model file of every root of ``folder``; a name in an earlier root hides the same name later."""
        seen: set[str] = set()
        found: list[ModelFile] = []
        extensions = self.extensions(folder)
        roots = self.roots(folder)
        bases = self._allowed_bases(roots)
        for index, root in enumerate(roots):
            for name, path in self._root_files(root, extensions, bases):
                if name not in seen:
                    seen.add(name)
                    found.append(ModelFile(name, index, path))
        return sorted(found, key=lambda entry: entry.name)

    def find(self, folder: str, name: str) -> Path | None:
        """The file ``name`` in the first root of ``folder`` holding it; None when absent or ``name`` is unsafe."""
        found = self.find_in_root(folder, name)
        return found[0] if found is not None else None

    def find_in_root(self, folder: str, name: str) -> tuple[Path, Path] | None:
        """``(path, root)`` of ``name`` in ``folder``, like :meth:`find`."""
        relative = safe_name(name)
        if relative is None:
            return None
        for root in self.roots(folder):
            path = root.joinpath(*relative.parts)
            if path.is_file() and _inside(path, self._allowed_bases([root])):
                return path, root
        return None

    def install_path(self, folder: str, filename: str) -> Path:
        """Where a download of ``filename`` into ``folder`` goes: ``models_dir/<canonical>/<filename>``."""
        relative = safe_name(filename)
        if relative is None or (folder and safe_name(folder) is None) or "/" in folder:
            raise ModelError(f"model file name {filename!r} in folder {folder!r} would leave the models folder")
        base = self.models_dir / self.canonical(folder) if folder else self.models_dir
        return base.joinpath(*relative.parts)

    def in_models_dir(self, root: Path) -> bool:
        """Whether ``root`` is one of the ``models_dir`` roots (not an external collection)."""
        return root not in self.extra_roots()

    # --- internals ---------------------------------------------------------------------------------------------

    def _allowed_bases(self, roots: Sequence[Path]) -> tuple[str, ...]:
        """Real paths a file may resolve into: ``models_dir``, every extra root and ``roots`` (which may be
        symlinks themselves)."""
        return tuple({os.path.realpath(base) for base in (self.models_dir, *self.extra_roots(), *roots)})

    def _root_files(self, root: Path, extensions: frozenset[str],
                    bases: tuple[str, ...]) -> list[tuple[str, Path]]:
        key = (root, extensions, bases)
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and _unchanged(cached[0]):
            return cached[1]
        dir_mtimes: dict[str, int] = {}
        files = list(_walk(root, "", extensions, bases, dir_mtimes, set()))
        with self._lock:
            self._cache[key] = (dir_mtimes, files)
        return files


def _inside(path: Path, bases: tuple[str, ...]) -> bool:
    real = os.path.realpath(path)
    return any(real == base or real.startswith(base.rstrip(os.sep) + os.sep) for base in bases)


def _walk(directory: Path, prefix: str, extensions: frozenset[str], bases: tuple[str, ...],
          dir_mtimes: dict[str, int], visited: set[tuple[int, int]]) -> Iterator[tuple[str, Path]]:
    """``(relative name, path)`` of the model files under ``directory``; records each directory's mtime."""
    try:
        stat = os.stat(directory)
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=lambda item: item.name)
    except OSError:
        dir_mtimes[str(directory)] = -1
        return
    dir_mtimes[str(directory)] = stat.st_mtime_ns
    if (stat.st_dev, stat.st_ino) in visited:
        return
    visited.add((stat.st_dev, stat.st_ino))
    for entry in entries:
        if entry.name.startswith(".") or "\\" in entry.name:
            continue
        path = Path(entry.path)
        if entry.is_symlink() and not _inside(path, bases):
            continue
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            yield from _walk(path, f"{name}/", extensions, bases, dir_mtimes, visited)
        elif entry.is_file() and not entry.name.endswith(PART_SUFFIX) \
                and os.path.splitext(entry.name)[1].lower() in extensions:
            yield name, path


def _unchanged(dir_mtimes: Mapping[str, int]) -> bool:
    for directory, mtime_ns in dir_mtimes.items():
        try:
            now = os.stat(directory).st_mtime_ns
        except OSError:
            now = -1
        if now != mtime_ns:
            return False
    return True
