"""``GET /``: the simple web page (``web/index.html``) that runs flows and shows the queue."""

from __future__ import annotations

from aiohttp import web

from visionatrix.errors import NotFound
from visionatrix.server.services import SERVICES


async def index(request: web.Request) -> web.StreamResponse:
    web_dir = request.app[SERVICES].web_dir
    page = web_dir / "index.html" if web_dir is not None else None
    if page is None or not page.is_file():
        raise NotFound("page", "/")
    return web.FileResponse(page, headers={"Cache-Control": "no-cache"})
