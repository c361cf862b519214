"""``GET /vapi/workers``: the workers that reported in, what they run and when they were last seen."""

from __future__ import annotations

from aiohttp import web

from visionatrix.server import jsonio, views
from visionatrix.server.services import SERVICES


async def list_workers(request: web.Request) -> web.Response:
    workers = await request.app[SERVICES].queue.list_workers()
    return web.json_response({"workers": [views.worker_view(worker) for worker in workers]}, dumps=jsonio.dumps)
