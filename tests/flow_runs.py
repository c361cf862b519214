"""Running a stored flow in-process for tests: inputs staged, parameters bound, the executor run, images read."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from PIL import Image

from visionatrix.executor.run import Executor, ExecutorSettings
from visionatrix.flows import bind_params


def run_flow(registry: Any, store: Any, tmp_path: Path, name: str, params: dict[str, Any],
             files: dict[str, Path] | None = None, model_folders: Any = None) -> list[Image.Image]:
    """The output images of flow ``name`` run with ``params`` and ``files`` (copied into a fresh input folder)."""
    input_dir, out_dir = tmp_path / "in", tmp_path / "out"
    input_dir.mkdir(parents=True, exist_ok=True)
    staged = {}
    for param, path in (files or {}).items():
        shutil.copyfile(path, input_dir / f"{param}{path.suffix}")
        staged[param] = f"{param}{path.suffix}"
    prompt = bind_params(store.get(name), params, staged)
    executor = Executor(registry, ExecutorSettings(device="cpu", input_dir=input_dir, output_dir=out_dir,
                                                   temp_dir=tmp_path / "temp", model_folders=model_folders))
    try:
        result = asyncio.run(executor.execute(prompt))
    finally:
        executor.close()
    items = [item for ui in result.ui.values() for item in ui.get("images", [])]
    return [read_image(out_dir / item["subfolder"] / item["filename"]) for item in items]


def read_image(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.copy()
