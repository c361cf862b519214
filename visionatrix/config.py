"""Settings, built once in ``__main__`` from the environment and command-line flags, then passed down.

Every setting has an environment variable and a flag; the flag wins. Nothing is read at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from visionatrix.errors import VisionatrixError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class InvalidSetting(VisionatrixError):
    """A setting has a value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    """Everything configurable about this process."""

    core_nodes_dir: Path = PROJECT_ROOT / "comfy_nodes"
    nodes_dirs: tuple[Path, ...] = ()
    flows_dirs: tuple[Path, ...] = (PROJECT_ROOT / "flows",)
    models_catalog: Path | None = None
    device: str | None = None
    max_image_pixels: int = 64 * 1024 * 1024
    cache_max_entries: int = 256
    temp_dir: Path = field(default_factory=lambda: Path("vix_temp"))
    log_level: str = "INFO"


def _paths(value: str | None) -> tuple[Path, ...]:
    """Paths separated by ``;`` (Visionatrix's convention), blanks ignored."""
    if not value:
        return ()
    return tuple(Path(part.strip()).expanduser() for part in value.split(";") if part.strip())


def _positive_int(name: str, value: str | int | None, default: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidSetting(f"{name} must be an integer, got {value!r}") from None
    if number < 0:
        raise InvalidSetting(f"{name} must not be negative, got {number}")
    return number


def load_settings(env: Mapping[str, str] | None = None, **flags: object) -> Settings:
    """Settings from ``env`` (default: ``os.environ``) overridden by non-None ``flags``."""
    env = os.environ if env is None else env
    defaults = Settings()
    nodes_dirs = _paths(env.get("VIX_NODES_DIRS")) + tuple(Path(p) for p in flags.get("nodes_dirs") or ())  # type: ignore[attr-defined]
    flows_dirs = _paths(env.get("VIX_FLOWS_DIRS")) or defaults.flows_dirs
    catalog = flags.get("models_catalog") or env.get("VIX_MODELS_CATALOG")
    device = flags.get("device") or env.get("VIX_DEVICE") or None
    if device is not None and not (device == "cpu" or str(device).startswith("cuda")):
        raise InvalidSetting(f"VIX_DEVICE must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return Settings(
        nodes_dirs=nodes_dirs,
        flows_dirs=flows_dirs,
        models_catalog=Path(str(catalog)) if catalog else None,
        device=str(device) if device else None,
        max_image_pixels=_positive_int("VIX_MAX_IMAGE_PIXELS", flags.get("max_image_pixels")  # type: ignore[arg-type]
                                       or env.get("VIX_MAX_IMAGE_PIXELS"), defaults.max_image_pixels),
        cache_max_entries=_positive_int("VIX_CACHE_MAX_ENTRIES", env.get("VIX_CACHE_MAX_ENTRIES"),
                                        defaults.cache_max_entries),
        temp_dir=Path(env.get("VIX_TEMP_DIR") or defaults.temp_dir),
        log_level=str(flags.get("log_level") or env.get("LOG_LEVEL") or defaults.log_level).upper(),
    )
