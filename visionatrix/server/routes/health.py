"""``GET /vapi/health`` and ``GET /vapi/openapi.json``."""

from __future__ import annotations

from aiohttp import web

from visionatrix.server import jsonio, openapi
from visionatrix.server.services import SERVICES


async def get_health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": request.app[SERVICES].version}, dumps=jsonio.dumps)


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi.document(request.app[SERVICES].version), dumps=jsonio.dumps)
