"""``VIX_EXTRA_MODEL_PATHS``: ComfyUI's ``extra_model_paths.yaml``, so an existing ComfyUI or A1111 collection is
used where it lies.

The file has top-level sections (``comfyui:``, ``a111:``, any name); each is a mapping with an optional
``base_path`` (``~`` expanded; relative to the YAML file's folder), an optional ``is_default``
(accepted and ignored: downloads always go to ``VIX_MODELS_DIR``) and folder keys whose value is one path or
several separated by newlines (a ``|`` block), each relative to ``base_path`` (or to the file's folder without
one). Legacy folder keys (``unet``, ``clip``) are mapped to their canonical names. Torch-free.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from visionatrix.errors import ModelError
from visionatrix.models.folders import FOLDER_ALIASES, ModelFolders, safe_name

_SECTION_KEYS = ("base_path", "is_default")


def model_folders(models_dir: Path, extra_model_paths: Path | None) -> ModelFolders:
    """The :class:`ModelFolders` of ``VIX_MODELS_DIR`` plus the roots of a ``VIX_EXTRA_MODEL_PATHS`` file."""
    extra = load_extra_model_paths(extra_model_paths) if extra_model_paths is not None else None
    return ModelFolders(models_dir, extra)


def load_extra_model_paths(path: Path) -> dict[str, list[Path]]:
    """``{canonical folder: [root, ...]}`` in file order; :class:`ModelError` naming the file and the key for a
    file that cannot be read or has the wrong shape."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"extra model paths {path}: cannot read: {exc}") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelError(f"extra model paths {path}: not valid YAML: {exc}") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise ModelError(f"extra model paths {path}: expected a mapping of sections, got {type(config).__name__}")
    folders: dict[str, list[Path]] = {}
    yaml_dir = path.absolute().parent
    for section, body in config.items():
        for folder, root in _section_roots(path, yaml_dir, str(section), body):
            roots = folders.setdefault(folder, [])
            if root not in roots:
                roots.append(root)
    return folders


def _section_roots(path: Path, yaml_dir: Path, section: str, body: Any) -> list[tuple[str, Path]]:
    if body is None:
        return []
    if not isinstance(body, dict):
        raise ModelError(f"extra model paths {path}: section {section!r} must be a mapping of folders to paths, "
                         f"got {type(body).__name__}")
    base = yaml_dir
    if body.get("base_path") is not None:
        base = yaml_dir / _expand(path, f"{section}.base_path", body["base_path"])
    is_default = body.get("is_default", False)
    if not isinstance(is_default, bool):
        raise ModelError(f"extra model paths {path}: {section}.is_default must be true or false")
    found = []
    for key, value in body.items():
        if key in _SECTION_KEYS:
            continue
        where = f"{section}.{key}"
        if not isinstance(key, str) or safe_name(key) is None or "/" in key:
            raise ModelError(f"extra model paths {path}: {where}: {key!r} is not a folder name")
        if value is None:
            continue
        if not isinstance(value, str):
            raise ModelError(f"extra model paths {path}: {where} must be a path or paths on separate lines, "
                             f"got {type(value).__name__}")
        folder = FOLDER_ALIASES.get(key, key)
        for line in value.splitlines():
            if line.strip():
                found.append((folder, Path(os.path.normpath(base / _expand(path, where, line.strip())))))
    return found


def _expand(path: Path, where: str, value: Any) -> Path:
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise ModelError(f"extra model paths {path}: {where} must be a non-empty path, got {value!r}")
    return Path(value.strip()).expanduser()
