"""A thin stand-in for the ComfyUI modules simple third-party packs import.

Packs written for ComfyUI reach for ``comfy.utils.ProgressBar``, ``comfy.model_management`` (device, interrupt
checks) and ``folder_paths`` (input/output/temp folders). :func:`install` registers small modules under those
names in ``sys.modules`` (only where no real module of that name is already imported) so such packs load
unchanged. Every function reads the running node's :mod:`visionatrix.nodes.context`. It is called by the pack
loader before third-party packs are imported, never at import time.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from visionatrix.errors import Interrupted
from visionatrix.nodes import context


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
    fp.get_filename_list = _model_files  # type: ignore[attr-defined]
    return fp


def _model_files(folder_name: str) -> list[str]:
    """The files of the models folder ``folder_name`` (relative, ``/``-separated, sorted); [] without one."""
    root = context.current().models_dir
    if root is None or not folder_name or "/" in folder_name or "\\" in folder_name or folder_name.startswith("."):
        return []
    folder = root / folder_name
    if not folder.is_dir():
        return []
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")
                  if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts))


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
