"""Settings, built once in ``__main__`` from the environment and command-line flags, then passed down.

Every setting has an environment variable and a flag; the flag wins. Nothing is read at import time. A value that
cannot be used raises :class:`InvalidSetting` naming the variable (the CLI exits with status 2).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from visionatrix.errors import VisionatrixError
from visionatrix.security_config import SecuritySettings, load_security

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URI = "sqlite+aiosqlite:///./visionatrix.db"
MODES = ("DEFAULT", "SERVER", "WORKER")
REMOTE_VAE_TYPES = ("SD v1", "SDXL", "Flux", "HunyuanVideo")
"""The ``vae_type`` values of ``RemoteVAEDecode``, the keys ``VIX_REMOTE_VAE_DECODERS`` may name."""
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
    user_dir: Path = field(default_factory=lambda: Path("vix_user"))
    """The graph editor's per-user settings and saved workflows (``VIX_USER_DIR``)."""
    models_catalog: tuple[str, ...] = (str(PROJECT_ROOT / "visionatrix" / "models" / "models_catalog.json"),)
    """``VIX_MODELS_CATALOG``: catalog files or http(s) URLs, later ones override earlier names; default: the
    bundled copy of Visionatrix's catalog (``visionatrix/models/models_catalog.json``)."""
    device: str | None = None
    max_image_pixels: int = 64 * 1024 * 1024
    cache_max_entries: int = 256
    temp_dir: Path = field(default_factory=lambda: Path("vix_temp"))
    temp_max_age_h: float = 24.0
    """``VIX_TEMP_MAX_AGE_H``: a finished task's temporary outputs (previews) are removed this long after it ended."""
    log_level: str = "INFO"
    mode: str = "DEFAULT"
    host: str = "127.0.0.1"
    port: int = 8288
    database_uri: str = DEFAULT_DATABASE_URI
    tasks_files_dir: Path = field(default_factory=lambda: Path("vix_tasks_files"))
    task_lease_s: float = 60.0
    task_max_attempts: int = 3
    queue_vacuum_every: int = 2_000
    """``VIX_QUEUE_VACUUM_EVERY``: PostgreSQL, claims between two vacuums of ``tasks`` by the queue; 0: never."""
    max_upload_bytes: int = 100 * 1024 * 1024
    progress_interval_s: float = 0.5
    worker_name: str | None = None
    """The worker's id in ``GET /vapi/workers``; None: ``default_worker_name`` (host name and device)."""
    worker_flows: tuple[str, ...] | None = None
    """Flows this worker takes; None: every flow whose node types and models it has."""
    worker_auth: str | None = None
    """``user:password`` or a token: required on the server's worker routes, sent by Server-mode workers."""
    server_url: str | None = None
    """WORKER mode: the server's base URL (``VIX_HOST=http://host:port``); None: Database-FS."""
    models_dir: Path = field(default_factory=lambda: Path("models"))
    extra_model_paths: Path | None = None
    """``VIX_EXTRA_MODEL_PATHS``: a file in ComfyUI's ``extra_model_paths.yaml`` format."""
    download_allow_hosts: tuple[str, ...] | None = None
    """``VIX_DOWNLOAD_ALLOW_HOSTS``: hosts model downloads may reach (``*``: any); None: the catalog's hosts."""
    max_concurrent_downloads: int = 2
    hf_token: str | None = None
    civitai_token: str | None = None
    ram_cache_bytes: int | None = None
    """``VIX_RAM_CACHE_GB``: RAM the model manager may keep models in; None: half of the host's RAM."""
    vram_reserve_bytes: int = 1024**3
    """``VIX_VRAM_RESERVE_GB``: VRAM left free for activations when models are placed on a GPU."""
    cache_max_bytes: int = 512 * 1024**2
    """``VIX_CACHE_MAX_MB``: bytes of tensors the executor's output cache may hold between runs."""
    poll_min_s: float = 0.05
    poll_max_s: float = 2.0
    long_poll_s: float = 20.0
    claim_ahead: bool = True
    """WORKER/DEFAULT: hold one task ahead while a task runs (pipelining)."""
    remote_vae_decoders: dict[str, str] = field(default_factory=dict)
    """``VIX_REMOTE_VAE_DECODERS``: ``RemoteVAEDecode``'s endpoint (http(s) URL) per ``vae_type``; a type without
    one decodes locally."""
    security: SecuritySettings = field(default_factory=SecuritySettings)
    """Sign-in, allowed hosts, request limits and webhooks (``visionatrix/security_config.py``)."""

    @property
    def worker_id(self) -> str:
        """Alias of the worker's name (the column and API field are ``worker_id``)."""
        return self.worker_name or default_worker_name(self.device)


def default_worker_name(device: str | None) -> str:
    """``<host name>:<device>``, the device as configured or ``auto`` (the executor picks CUDA when present)."""
    return f"{socket.gethostname()}:{device or 'auto'}"


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


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _bool(name: str, value: Any, default: bool) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise InvalidSetting(f"{name} must be one of 1, 0, true, false, yes, no, on, off; got {value!r}")


def _gigabytes(name: str, value: Any, default: int | None) -> int | None:
    """A size in GB (decimal allowed) as bytes; ``default`` when unset."""
    if value is None or value == "":
        return default
    return int(_float(name, value, 0.0, low=0.0) * 1024**3)


def _sources(value: Any) -> tuple[str, ...]:
    """``;``-separated files or URLs (a list from flags), blanks dropped, order kept."""
    if value in (None, "", [], ()):
        return ()
    parts = value if isinstance(value, (list, tuple)) else str(value).split(";")
    return tuple(str(part).strip() for part in parts if str(part).strip())


def _hosts(value: Any) -> tuple[str, ...] | None:
    hosts = tuple(host.lower() for host in _sources(str(value).replace(",", ";") if value else value))
    return hosts or None


def _pick(flags: Mapping[str, Any], flag: str, env: Mapping[str, str], *names: str) -> Any:
    """The flag's value when given, else the first environment variable set."""
    if flags.get(flag) not in (None, "", [], ()):
        return flags[flag]
    return next((env[n] for n in names if env.get(n)), None)


def _flow_names(name: str, value: Any) -> tuple[str, ...] | None:
    """Flow names separated by ``;`` (or a list from flags); None when unset."""
    if value in (None, "", [], ()):
        return None
    parts = value if isinstance(value, (list, tuple)) else str(value).split(";")
    names = tuple(dict.fromkeys(str(part).strip() for part in parts if str(part).strip()))
    if not names:
        raise InvalidSetting(f"{name} names no flow: {value!r}")
    return names


def _server_url(mode: str, host: str | None) -> str | None:
    """WORKER mode with ``VIX_HOST`` set: the server's URL (``http://host:port`` or ``https://...``)."""
    if mode != "WORKER" or not host:
        return None
    url = str(host).rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise InvalidSetting(f"VIX_HOST of a worker must be the server's URL, like http://server:8288, got {host!r}")
    return url


def _worker_auth(value: Any) -> str | None:
    """``user:password`` (both parts non-empty) or a token; no whitespace."""
    if value in (None, ""):
        return None
    text = str(value)
    user, colon, password = text.partition(":")
    if any(char.isspace() for char in text) or (colon and not (user and password)):
        raise InvalidSetting("WORKER_AUTH must be 'user:password' or a token, without spaces or an empty part")
    return text


def _remote_vae_decoders(value: Any) -> dict[str, str]:
    """``{"Flux": "https://...", ...}`` (JSON) or ``Flux=https://...,SDXL=https://...``; names match case, spaces,
    ``_`` and ``-`` aside (``sd_v1`` is ``SD v1``); every URL must be http(s) with a host."""
    if value in (None, "", {}):
        return {}
    name = "VIX_REMOTE_VAE_DECODERS"
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif str(value).lstrip().startswith("{"):
        try:
            parsed = json.loads(str(value))
        except ValueError as exc:
            raise InvalidSetting(f"{name} is not a valid JSON object: {exc}") from None
        if not isinstance(parsed, dict):
            raise InvalidSetting(f"{name} must be a JSON object of VAE type to URL, got {value!r}")
        pairs = list(parsed.items())
    else:
        pairs = []
        for part in (p.strip() for p in str(value).split(",")):
            vae_type, eq, url = part.partition("=")
            if part and not eq:
                raise InvalidSetting(f"{name} must be 'type=url' pairs separated by ',' (or a JSON object), got "
                                     f"{part!r}")
            if part:
                pairs.append((vae_type.strip(), url.strip()))
    known = {_type_key(t): t for t in REMOTE_VAE_TYPES}
    decoders: dict[str, str] = {}
    for vae_type, url in pairs:
        canonical = known.get(_type_key(str(vae_type)))
        if canonical is None:
            raise InvalidSetting(f"{name}: unknown VAE type {vae_type!r}; expected one of {', '.join(known.values())}")
        try:
            split = urlsplit(url) if isinstance(url, str) else None
        except ValueError:
            split = None
        if split is None or split.scheme not in ("http", "https") or not split.hostname:
            raise InvalidSetting(f"{name}: the endpoint of {canonical} must be an http(s) URL with a host, got "
                                 f"{url!r}")
        if canonical in decoders:
            raise InvalidSetting(f"{name} names {canonical} twice")
        decoders[canonical] = url
    return decoders


def _type_key(vae_type: str) -> str:
    return "".join(char for char in vae_type.lower() if char not in " _-")


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
    host = _pick(flags, "host", env, "VIX_HOST")
    poll_min_s = _float("VIX_POLL_MIN_S", env.get("VIX_POLL_MIN_S"), defaults.poll_min_s, low=0.001)
    poll_max_s = _float("VIX_POLL_MAX_S", env.get("VIX_POLL_MAX_S"), defaults.poll_max_s, low=0.001)
    if poll_max_s < poll_min_s:
        raise InvalidSetting(f"VIX_POLL_MAX_S ({poll_max_s}) must not be below VIX_POLL_MIN_S ({poll_min_s})")
    long_poll_s = _float("VIX_LONG_POLL_S", env.get("VIX_LONG_POLL_S"), defaults.long_poll_s, low=0.0)
    if long_poll_s > 30:
        raise InvalidSetting(f"VIX_LONG_POLL_S must be at most 30, got {long_poll_s}")
    server_url = _server_url(mode, host)
    return Settings(
        nodes_dirs=nodes_dirs,
        flows_dirs=_paths(env.get("VIX_FLOWS_DIRS")) or defaults.flows_dirs,
        user_flows_dir=Path(_pick(flags, "user_flows_dir", env, "VIX_USER_FLOWS_DIR") or defaults.user_flows_dir),
        user_dir=Path(_pick(flags, "user_dir", env, "VIX_USER_DIR") or defaults.user_dir),
        models_catalog=_sources(catalog) or defaults.models_catalog,
        device=str(device) if device else None,
        max_image_pixels=_int("VIX_MAX_IMAGE_PIXELS", _pick(flags, "max_image_pixels", env, "VIX_MAX_IMAGE_PIXELS"),
                              defaults.max_image_pixels, low=1),
        cache_max_entries=_int("VIX_CACHE_MAX_ENTRIES", env.get("VIX_CACHE_MAX_ENTRIES"),
                               defaults.cache_max_entries),
        temp_dir=Path(env.get("VIX_TEMP_DIR") or defaults.temp_dir),
        log_level=str(_pick(flags, "log_level", env, "LOG_LEVEL") or defaults.log_level).upper(),
        mode=mode,
        host=defaults.host if server_url is not None or not host else str(host),
        port=_int("VIX_PORT", _pick(flags, "port", env, "VIX_PORT"), defaults.port, low=0, high=65535),
        database_uri=_database_uri(_pick(flags, "database_uri", env, "DATABASE_URI")),
        tasks_files_dir=Path(_pick(flags, "tasks_files_dir", env, "TASKS_FILES_DIR") or defaults.tasks_files_dir),
        task_lease_s=_float("VIX_TASK_LEASE_S", _pick(flags, "task_lease_s", env, "VIX_TASK_LEASE_S"),
                            defaults.task_lease_s, low=1.0),
        task_max_attempts=_int("VIX_TASK_MAX_ATTEMPTS", env.get("VIX_TASK_MAX_ATTEMPTS"),
                               defaults.task_max_attempts, low=1),
        queue_vacuum_every=_int("VIX_QUEUE_VACUUM_EVERY", env.get("VIX_QUEUE_VACUUM_EVERY"),
                                defaults.queue_vacuum_every, low=0),
        max_upload_bytes=_int("VIX_MAX_UPLOAD_BYTES", env.get("VIX_MAX_UPLOAD_BYTES"), defaults.max_upload_bytes,
                              low=1),
        progress_interval_s=_float("VIX_PROGRESS_INTERVAL_S", env.get("VIX_PROGRESS_INTERVAL_S"),
                                   defaults.progress_interval_s, low=0.0),
        temp_max_age_h=_float("VIX_TEMP_MAX_AGE_H", env.get("VIX_TEMP_MAX_AGE_H"), defaults.temp_max_age_h, low=0.0),
        worker_name=_pick(flags, "worker_name", env, "VIX_WORKER_NAME", "VIX_WORKER_ID") or None,
        worker_flows=_flow_names("VIX_WORKER_FLOWS", _pick(flags, "flows", env, "VIX_WORKER_FLOWS")),
        worker_auth=_worker_auth(_pick(flags, "worker_auth", env, "WORKER_AUTH")),
        server_url=server_url,
        models_dir=Path(_pick(flags, "models_dir", env, "VIX_MODELS_DIR") or defaults.models_dir),
        extra_model_paths=Path(extra) if (extra := _pick(flags, "extra_model_paths", env,
                                                         "VIX_EXTRA_MODEL_PATHS")) else None,
        download_allow_hosts=_hosts(env.get("VIX_DOWNLOAD_ALLOW_HOSTS")),
        max_concurrent_downloads=_int("VIX_MAX_CONCURRENT_DOWNLOADS", env.get("VIX_MAX_CONCURRENT_DOWNLOADS"),
                                      defaults.max_concurrent_downloads, low=1, high=16),
        hf_token=env.get("HF_TOKEN") or None,
        civitai_token=env.get("CIVITAI_TOKEN") or None,
        ram_cache_bytes=_gigabytes("VIX_RAM_CACHE_GB", env.get("VIX_RAM_CACHE_GB"), defaults.ram_cache_bytes),
        vram_reserve_bytes=_gigabytes("VIX_VRAM_RESERVE_GB", env.get("VIX_VRAM_RESERVE_GB"),
                                      defaults.vram_reserve_bytes) or 0,
        cache_max_bytes=_int("VIX_CACHE_MAX_MB", env.get("VIX_CACHE_MAX_MB"), defaults.cache_max_bytes // 1024**2)
        * 1024**2,
        poll_min_s=poll_min_s,
        poll_max_s=poll_max_s,
        long_poll_s=long_poll_s,
        claim_ahead=_bool("VIX_WORKER_CLAIM_AHEAD", _pick(flags, "claim_ahead", env, "VIX_WORKER_CLAIM_AHEAD"),
                          defaults.claim_ahead),
        remote_vae_decoders=_remote_vae_decoders(_pick(flags, "remote_vae_decoders", env,
                                                       "VIX_REMOTE_VAE_DECODERS")),
        security=load_security(env, flags, InvalidSetting),
    )
