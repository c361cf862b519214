"""ComfyUI's ``/internal`` routes (no ``/api`` alias): the editor's terminal panel (the server's recent log lines,
and ``logs`` WebSocket messages to the sockets that subscribed), the model folders, and the files of the input,
output and temp folders (``comfyui_api.md`` §1.2).
"""

from __future__ import annotations

import collections
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from visionatrix.server import parsing
from visionatrix.server.comfy.paths import ComfyFolders, list_images
from visionatrix.server.errors import BadRequest
from visionatrix.server.services import SERVICES

KEEP_LINES = 2000
TERMINAL = {"cols": 120, "rows": 40}


class RecentLogs(logging.Handler):
    """The last ``KEEP_LINES`` log records of the process, as ``{"t", "m"}`` entries; new ones also go to the
    sockets that subscribed (through ``forward``)."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.entries: collections.deque[dict[str, str]] = collections.deque(maxlen=KEEP_LINES)
        self.subscribers: set[str] = set()
        self.forward: Any = None
        """``forward(sids, entries)``, called for every new entry while someone subscribed."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = {"t": datetime.fromtimestamp(record.created, UTC).isoformat(),
                     "m": f"{record.levelname} {record.name}: {record.getMessage()}\n"}
        except Exception:  # a broken log call must not break the caller
            return
        self.entries.append(entry)
        if self.subscribers and self.forward is not None:
            self.forward(set(self.subscribers), [entry])


LOGS = web.AppKey("comfy_recent_logs", RecentLogs)


def setup(app: web.Application) -> None:
    """Collect the process's log lines while the application runs."""
    logs = app[LOGS] = RecentLogs()

    async def attach(_: web.Application) -> None:
        logging.getLogger().addHandler(logs)

    async def detach(_: web.Application) -> None:
        logging.getLogger().removeHandler(logs)

    app.on_startup.append(attach)
    app.on_cleanup.append(detach)


def add_routes(router: web.UrlDispatcher, prefix: str) -> None:
    if prefix not in ("", "/comfy"):
        return
    router.add_get(f"{prefix}/internal/logs", get_logs)
    router.add_get(f"{prefix}/internal/logs/raw", get_raw_logs)
    router.add_patch(f"{prefix}/internal/logs/subscribe", subscribe_logs)
    router.add_get(f"{prefix}/internal/folder_paths", folder_paths)
    router.add_get(f"{prefix}/internal/files/{{kind}}", files_of)


async def get_logs(request: web.Request) -> web.Response:
    return web.json_response("".join(entry["m"] for entry in request.app[LOGS].entries))


async def get_raw_logs(request: web.Request) -> web.Response:
    return web.json_response({"entries": list(request.app[LOGS].entries), "size": TERMINAL})


async def subscribe_logs(request: web.Request) -> web.Response:
    """``{"clientId", "enabled"}``: that socket gets (or stops getting) ``logs`` messages."""
    body = await parsing.read_json(request, optional=True, scripts_ok=True)
    if not isinstance(body, dict) or not isinstance(body.get("clientId"), str) \
            or not isinstance(body.get("enabled"), bool):
        raise BadRequest("invalid_request", 'expected {"clientId": string, "enabled": boolean}')
    subscribers = request.app[LOGS].subscribers
    (subscribers.add if body["enabled"] else subscribers.discard)(body["clientId"])
    return web.Response(status=200)


async def folder_paths(request: web.Request) -> web.Response:
    """``{folder: [absolute path]}``: the model folders (every root, extra model paths included), and the input,
    output and temp folders."""
    services = request.app[SERVICES]
    folders = ComfyFolders(services.storage.root)
    paths: dict[str, list[str]] = {}
    if services.model_folders is not None:
        for name, (roots, _extensions) in sorted(services.model_folders.folder_names_and_paths().items()):
            paths[name] = [str(Path(root).absolute()) for root in roots]
    for kind in ("input", "output", "temp"):
        paths[kind] = [str(folders.folder(kind))]
    return web.json_response(paths)


async def files_of(request: web.Request) -> web.Response:
    """The image files of the input, output or temp folder, newest first."""
    kind = request.match_info["kind"]
    if kind not in ("input", "output", "temp"):
        raise BadRequest("invalid_request", f"unknown folder {kind!r}: expected input, output or temp")
    base = ComfyFolders(request.app[SERVICES].storage.root).folder(kind)
    names = list_images(base) if base.is_dir() else []
    names.sort(key=lambda name: (base / name).stat().st_mtime, reverse=True)
    return web.json_response(names)
