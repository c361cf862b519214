"""``GET /vapi/tasks/{task_id}/files/{kind}/{name}``: stream one input, output or temp (preview) file of a task."""

from __future__ import annotations

import asyncio
from urllib.parse import quote

from aiohttp import web

from visionatrix.errors import NotFound
from visionatrix.server import parsing
from visionatrix.server.services import SERVICES
from visionatrix.server.task_owners import owned_task

KINDS = ("input", "output", "temp")


async def download(request: web.Request) -> web.FileResponse:
    services = request.app[SERVICES]
    task_id = parsing.task_id(request)
    kind, name = request.match_info["kind"], request.match_info["name"]
    await owned_task(request, task_id)  # NotFound for an unknown task, or another user's
    if kind not in KINDS:
        raise NotFound("file kind", kind)
    path = services.storage.resolve(task_id, kind, name)
    if not await asyncio.to_thread(path.is_file):
        raise NotFound(f"{kind} file", name)
    disposition = f"inline; filename*=UTF-8''{quote(path.name)}"
    return web.FileResponse(path, headers={"Content-Disposition": disposition})
