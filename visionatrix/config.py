"""Settings, built once in ``__main__`` from the environment and command-line flags, then passed down.

Every setting has an environment variable and a flag; the flag wins. Nothing is read at import time. A value that
cannot be used raises :class:`InvalidSetting` naming the variable (the CLI exits with status 2).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visionatrix.errors import VisionatrixError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URI = "sqlite+aiosqlite:///./visionatrix.db"
MODES = ("DEFAULT", "SERVER", "WORKER")
_DB_SCHEMES = ("sqlite+aiosqlite", "postgresql+asyncpg", "mysql+asyncmy", "mysql+aiomysql", "mariadb+asyncmy")


class InvalidSetting(VisionatrixError):
    """A setting has a value that cannot be used."""


@dataclass(frozen=True)
class Settings:
    """Everything configurable about this process."""

    core_nodes_dir: Path = PROJECT_ROOT / "comfy_nodes"
    nodes_dirs: tuple[Path, ...] = ()
    flows_dirs: tuple[Path, ...] = (PROJECT_ROOT / "flows",)
    user_flows_dir: Path = field(default_factory=lambda: Path("vix_flows"))
    models_catalog: Path | None = None
    device: str | None = None
    max_image_pixels: int = 64 * 1024 * 1024
    cache_max_entries: int = 256
    temp_dir: Path = field(default_factory=lambda: Path("vix_temp"))
    log_level: str = "INFO"
    mode: str = "DEFAULT"
    host: str = "127.0.0.1"
    port: int = 8288
    database_uri: str = DEFAULT_DATABASE_URI
    tasks_files_dir: Path = field(default_factory=lambda: Path("vix_tasks_files"))
    task_lease_s: float = 60.0
    task_max_attempts: int = 3
    max_upload_bytes: int = 100 * 1024 * 1024
    progress_interval_s: float = 0.5
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


def _paths(value: str | None) -> tuple[Path, ...]:
    """Paths separated by ``;`` (Visionatrix's convention), blanks ignored."""
    if not value:
        return ()
    return tuple(Path(part.strip()).expanduser() for part in value.split(";") if part.strip())


def _int(name: str, value: Any, default: int, *, low: int = 0, high: int | None = None) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidSetting(f"{name} must be an integer, got {value!r}") from None
    if number < low or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise InvalidSetting(f"{name} must be {bounds}, got {number}")
    return number


def _float(name: str, value: Any, default: float, *, low: float) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidSetting(f"{name} must be a number, got {value!r}") from None
    if not number >= low:
        raise InvalidSetting(f"{name} must be at least {low}, got {number}")
    return number


def _pick(flags: Mapping[str, Any], flag: str, env: Mapping[str, str], *names: str) -> Any:
    """The flag's value when given, else the first environment variable set."""
    if flags.get(flag) not in (None, "", [], ()):
        return flags[flag]
    return next((env[n] for n in names if env.get(n)), None)


def _database_uri(value: str | None) -> str:
    uri = value or DEFAULT_DATABASE_URI
    if not uri.startswith(tuple(f"{scheme}://" for scheme in _DB_SCHEMES)):
        raise InvalidSetting(f"DATABASE_URI must start with one of {', '.join(_DB_SCHEMES)}://, got {uri!r}")
    return uri


def load_settings(env: Mapping[str, str] | None = None, **flags: Any) -> Settings:
    """Settings from ``env`` (default: ``os.environ``) overridden by non-empty ``flags``."""
    env = os.environ if env is None else env
    defaults = Settings()
    nodes_dirs = _paths(env.get("VIX_NODES_DIRS")) + tuple(Path(p) for p in flags.get("nodes_dirs") or ())
    device = _pick(flags, "device", env, "VIX_DEVICE")
    if device is not None and not (device == "cpu" or str(device).startswith("cuda")):
        raise InvalidSetting(f"VIX_DEVICE must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    mode = str(_pick(flags, "mode", env, "VIX_MODE") or "DEFAULT").upper()
    if mode not in MODES:
        raise InvalidSetting(f"VIX_MODE must be one of {', '.join(MODES)}, got {mode!r}")
    catalog = _pick(flags, "models_catalog", env, "VIX_MODELS_CATALOG")
    return Settings(
        nodes_dirs=nodes_dirs,
        flows_dirs=_paths(env.get("VIX_FLOWS_DIRS")) or defaults.flows_dirs,
        user_flows_dir=Path(_pick(flags, "user_flows_dir", env, "VIX_USER_FLOWS_DIR") or defaults.user_flows_dir),
        models_catalog=Path(str(catalog)) if catalog else None,
        device=str(device) if device else None,
        max_image_pixels=_int("VIX_MAX_IMAGE_PIXELS", _pick(flags, "max_image_pixels", env, "VIX_MAX_IMAGE_PIXELS"),
                              defaults.max_image_pixels, low=1),
        cache_max_entries=_int("VIX_CACHE_MAX_ENTRIES", env.get("VIX_CACHE_MAX_ENTRIES"),
                               defaults.cache_max_entries),
        temp_dir=Path(env.get("VIX_TEMP_DIR") or defaults.temp_dir),
        log_level=str(_pick(flags, "log_level", env, "LOG_LEVEL") or defaults.log_level).upper(),
        mode=mode,
        host=str(_pick(flags, "host", env, "VIX_HOST") or defaults.host),
        port=_int("VIX_PORT", _pick(flags, "port", env, "VIX_PORT"), defaults.port, low=0, high=65535),
        database_uri=_database_uri(_pick(flags, "database_uri", env, "DATABASE_URI")),
        tasks_files_dir=Path(_pick(flags, "tasks_files_dir", env, "TASKS_FILES_DIR") or defaults.tasks_files_dir),
        task_lease_s=_float("VIX_TASK_LEASE_S", _pick(flags, "task_lease_s", env, "VIX_TASK_LEASE_S"),
                            defaults.task_lease_s, low=1.0),
        task_max_attempts=_int("VIX_TASK_MAX_ATTEMPTS", env.get("VIX_TASK_MAX_ATTEMPTS"),
                               defaults.task_max_attempts, low=1),
        max_upload_bytes=_int("VIX_MAX_UPLOAD_BYTES", env.get("VIX_MAX_UPLOAD_BYTES"), defaults.max_upload_bytes,
                              low=1),
        progress_interval_s=_float("VIX_PROGRESS_INTERVAL_S", env.get("VIX_PROGRESS_INTERVAL_S"),
                                   defaults.progress_interval_s, low=0.0),
        worker_id=str(_pick(flags, "worker_id", env, "VIX_WORKER_ID") or defaults.worker_id),
    )
