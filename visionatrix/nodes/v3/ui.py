"""The ``comfy_api.latest.ui`` stand-in: the ``ui`` part of ``io.NodeOutput(ui=...)``. Imports torch, numpy and
PIL only when an image preview is saved."""

from __future__ import annotations

import uuid
from typing import Any

from visionatrix.nodes import context


class UIOutput:
    """Base of the ui helpers: :meth:`as_dict` is the node's ``ui`` dict."""

    def as_dict(self) -> dict[str, Any]:
        raise NotImplementedError


class SavedResult(dict[str, Any]):
    """One saved file as the editor's ``ui`` lists it."""

    def __init__(self, filename: str, subfolder: str = "", type: str = "output") -> None:
        super().__init__(filename=filename, subfolder=subfolder, type=type)


class SavedImages(UIOutput):
    def __init__(self, results: list[SavedResult], is_animated: bool = False) -> None:
        self.results = list(results)
        self.is_animated = is_animated

    def as_dict(self) -> dict[str, Any]:
        return {"images": list(self.results), "animated": (self.is_animated,)}


class PreviewText(UIOutput):
    def __init__(self, value: str, **_ignored: Any) -> None:
        self.value = value

    def as_dict(self) -> dict[str, Any]:
        return {"text": [self.value]}


class PreviewImage(UIOutput):
    """Saves an IMAGE batch as PNG files in the temp folder (``type: "temp"``)."""

    def __init__(self, image: Any, animated: bool = False, cls: Any = None, **_ignored: Any) -> None:
        self.results = _save_temp_pngs(image)
        self.animated = animated

    def as_dict(self) -> dict[str, Any]:
        return {"images": list(self.results), "animated": (self.animated,)}


class PreviewMask(PreviewImage):
    def __init__(self, mask: Any, animated: bool = False, cls: Any = None, **_ignored: Any) -> None:
        super().__init__(mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1])).movedim(1, -1).expand(
            -1, -1, -1, 3), animated, cls)


def _save_temp_pngs(image: Any) -> list[SavedResult]:
    import numpy as np
    from PIL import Image

    folder = context.current().temp_dir
    folder.mkdir(parents=True, exist_ok=True)
    prefix = f"vix_preview_{uuid.uuid4().hex[:10]}"
    results = []
    for i, item in enumerate(image):
        pixels = (item.detach().float().cpu().clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        name = f"{prefix}_{i:05}_.png"
        Image.fromarray(pixels).save(folder / name, compress_level=1)
        results.append(SavedResult(name, "", "temp"))
    return results


def as_ui_dict(ui: Any) -> dict[str, Any] | None:
    """A ``NodeOutput``'s ``ui`` as a plain dict (None stays None)."""
    if ui is None or isinstance(ui, dict):
        return ui
    if hasattr(ui, "as_dict"):
        return ui.as_dict()
    raise TypeError(f"NodeOutput ui must be a dict or a ui helper, got {type(ui).__name__}")
