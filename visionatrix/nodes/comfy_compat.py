"""A thin stand-in for the ComfyUI modules simple third-party packs import.

Packs written for ComfyUI reach for ``comfy.utils.ProgressBar``, ``comfy.model_management`` (device, interrupt
checks) and ``folder_paths`` (input/output/temp folders, and the model folders: ``get_filename_list``,
``get_full_path``, ``models_dir``, ``folder_names_and_paths``, ... answer from the node context's
``model_folders``). :func:`install` registers small modules under those
names, plus ``comfy_api`` (V3 nodes) and ``comfy_execution.graph_utils`` (:mod:`visionatrix.nodes.v3`), in
``sys.modules`` (only where no real module of that name is already imported) so such packs load
unchanged. Every function reads the running node's :mod:`visionatrix.nodes.context`. It is called by the pack
loader before third-party packs are imported, never at import time.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any, cast

from visionatrix.errors import Interrupted
from visionatrix.models.folders import FOLDER_ALIASES, MODEL_EXTENSIONS, ModelFileList, ModelFolders
from visionatrix.nodes import context
from visionatrix.nodes.v3 import modules as v3_modules


def _torch_device() -> Any:
    import torch

    return torch.device(context.current().device)


def _throw_if_interrupted() -> None:
    context.current().check_interrupt()


def _processing_interrupted() -> bool:
    return context.current().interrupt_event.is_set()


def _interrupt(value: bool = True) -> None:
    event = context.current().interrupt_event
    event.set() if value else event.clear()


def _model_management() -> ModuleType:
    mm = ModuleType("comfy.model_management")
    mm.InterruptProcessingException = Interrupted  # type: ignore[attr-defined]
    mm.get_torch_device = _torch_device  # type: ignore[attr-defined]
    mm.intermediate_device = _torch_device  # type: ignore[attr-defined]
    mm.unet_offload_device = lambda: __import__("torch").device("cpu")  # type: ignore[attr-defined]
    mm.throw_exception_if_processing_interrupted = _throw_if_interrupted  # type: ignore[attr-defined]
    mm.processing_interrupted = _processing_interrupted  # type: ignore[attr-defined]
    mm.interrupt_current_processing = _interrupt  # type: ignore[attr-defined]
    mm.soft_empty_cache = lambda *a, **k: None  # type: ignore[attr-defined]
    return mm


def _folder(kind: str) -> str:
    ctx = context.current()
    return str({"input": ctx.input_dir, "output": ctx.output_dir, "temp": ctx.temp_dir}[kind])


def _folder_paths() -> ModuleType:
    fp = ModuleType("folder_paths")
    fp.get_input_directory = lambda: _folder("input")  # type: ignore[attr-defined]
    fp.get_output_directory = lambda: _folder("output")  # type: ignore[attr-defined]
    fp.get_temp_directory = lambda: _folder("temp")  # type: ignore[attr-defined]

    def get_annotated_filepath(name: str, default_dir: str | None = None) -> str:
        kind = "input"
        for suffix in ("output", "input", "temp"):
            if name.endswith(f" [{suffix}]"):
                name, kind = name[: -len(suffix) - 3], suffix
        return str(Path(default_dir or _folder(kind)) / name)

    fp.get_annotated_filepath = get_annotated_filepath  # type: ignore[attr-defined]
    fp.exists_annotated_filepath = lambda name: Path(get_annotated_filepath(name)).exists()  # type: ignore[attr-defined]
    models = _ModelPaths()
    fp.supported_pt_extensions = set(MODEL_EXTENSIONS)  # type: ignore[attr-defined]
    fp.get_filename_list = models.get_filename_list  # type: ignore[attr-defined]
    fp.get_full_path = models.get_full_path  # type: ignore[attr-defined]
    fp.get_full_path_or_raise = models.get_full_path_or_raise  # type: ignore[attr-defined]
    fp.get_folder_paths = models.get_folder_paths  # type: ignore[attr-defined]
    fp.add_model_folder_path = models.add_model_folder_path  # type: ignore[attr-defined]
    fp.map_legacy = lambda name: FOLDER_ALIASES.get(name, name)  # type: ignore[attr-defined]
    fp.__dict__["__getattr__"] = models.module_attribute  # PEP 562: models_dir and folder_names_and_paths
    return fp


class _ModelPaths:
    """The model half of ``folder_paths``: answers from the running node's ``model_folders`` (or a
    :class:`ModelFolders` of its ``models_dir``). Folders packs add (``add_model_folder_path``, or assigning into
    ``folder_names_and_paths``, usually while the pack is imported) are kept here and applied to every answer."""

    def __init__(self) -> None:
        self.added: list[tuple[str, Path, bool]] = []
        self.extensions: dict[str, set[str]] = {}
        self._by_dir: dict[Path, ModelFolders] = {}

    def folders(self) -> ModelFolders | None:
        ctx = context.current()
        folders = ctx.model_folders
        if folders is None and ctx.models_dir is not None:
            folders = self._by_dir.get(ctx.models_dir)
            if folders is None:
                folders = self._by_dir[ctx.models_dir] = ModelFolders(ctx.models_dir)
        if folders is not None:
            for folder, path, first in self.added:
                folders.add_path(folder, path, first=first)
            for folder, extensions in self.extensions.items():
                folders.set_extensions(folder, sorted(extensions))
        return cast("ModelFolders | None", folders)

    def get_filename_list(self, folder_name: str) -> ModelFileList:
        """The model files of ``folder_name`` (relative, ``/``-separated, sorted); [] without model folders."""
        folders = self.folders()
        return folders.list_files(folder_name) if folders is not None and folder_name else ModelFileList(
            folder=folder_name)

    def get_full_path(self, folder_name: str, filename: str) -> str | None:
        folders = self.folders()
        found = folders.find(folder_name, filename) if folders is not None else None
        return str(found) if found is not None else None

    def get_full_path_or_raise(self, folder_name: str, filename: str) -> str:
        found = self.get_full_path(folder_name, filename)
        if found is None:
            raise FileNotFoundError(f"model {filename!r} not found in the {folder_name!r} model folders")
        return found

    def get_folder_paths(self, folder_name: str) -> list[str]:
        folders = self.folders()
        return [str(root) for root in folders.roots(folder_name)] if folders is not None else []

    def add_model_folder_path(self, folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
        entry = (folder_name, Path(full_folder_path), is_default)
        if entry not in self.added:
            self.added.append(entry)

    def models_dir(self) -> str:
        folders = self.folders()
        return str(folders.models_dir if folders is not None else Path("models").absolute())

    def folder_names_and_paths(self) -> dict[str, tuple[list[str], set[str]]]:
        folders = self.folders()
        return _FolderMap(self, folders.folder_names_and_paths() if folders is not None else {})

    def module_attribute(self, name: str) -> Any:
        """``folder_paths.models_dir`` and ``folder_paths.folder_names_and_paths``, answered when read."""
        if name in ("models_dir", "folder_names_and_paths"):
            return getattr(self, name)()
        raise AttributeError(f"module 'folder_paths' has no attribute {name!r}")


class _FolderMap(dict[str, tuple[list[str], set[str]]]):
    """``folder_names_and_paths`` as a pack sees it: assigning ``(paths, extensions)`` to a folder adds those
    paths and sets its extensions for every later answer."""

    def __init__(self, owner: _ModelPaths, items: dict[str, tuple[list[str], set[str]]]) -> None:
        super().__init__(items)
        self._owner = owner

    def __setitem__(self, folder: str, value: tuple[list[str], set[str]]) -> None:
        paths, extensions = value
        for path in paths:
            self._owner.add_model_folder_path(folder, path)
        if extensions:
            self._owner.extensions[folder] = {str(ext).lower() for ext in extensions}
        super().__setitem__(folder, (list(paths), set(extensions)))


def install() -> None:
    """Register the stand-in modules unless real ones are already imported."""
    if "comfy" not in sys.modules:
        comfy = ModuleType("comfy")
        comfy.__path__ = []
        utils = ModuleType("comfy.utils")
        utils.ProgressBar = context.ProgressBar  # type: ignore[attr-defined]
        mm = _model_management()
        comfy.utils = utils  # type: ignore[attr-defined]
        comfy.model_management = mm  # type: ignore[attr-defined]
        sys.modules.update({"comfy": comfy, "comfy.utils": utils, "comfy.model_management": mm})
    if "folder_paths" not in sys.modules:
        sys.modules["folder_paths"] = _folder_paths()
    stand_ins = v3_modules.stand_ins()  # comfy_api (V3 nodes) and comfy_execution.graph_utils
    for root in ("comfy_api", "comfy_execution"):
        if root not in sys.modules:
            sys.modules.update({n: m for n, m in stand_ins.items() if n == root or n.startswith(f"{root}.")})
