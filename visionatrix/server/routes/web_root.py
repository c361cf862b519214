"""Our web UI (``web/``): ``GET /`` serves its page, ``GET /ui/<file>`` its scripts, styles and icons.

The page is never cached (a new version takes effect on the next load); the assets are revalidated on each load
(``no-cache``: the browser keeps them and asks whether they changed). Paths are confined to the web folder.
"""

from __future__ import annotations

from aiohttp import web

from visionatrix.errors import NotFound
from visionatrix.server.services import SERVICES
from visionatrix.server.static_files import confined_file
from visionatrix.storage.names import is_hidden

ASSETS = "/ui"
PAGE_HEADERS = {"Cache-Control": "no-store"}
ASSET_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
CONTENT_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
                 ".json": "application/json", ".html": "text/html"}


async def index(request: web.Request) -> web.StreamResponse:
    web_dir = request.app[SERVICES].web_dir
    page = web_dir / "index.html" if web_dir is not None else None
    if page is None or not page.is_file():
        raise NotFound("page", "/")
    return web.FileResponse(page, headers=PAGE_HEADERS)


async def asset(request: web.Request) -> web.StreamResponse:
    relative = request.match_info["path"]
    web_dir = request.app[SERVICES].web_dir
    path = confined_file(web_dir.resolve(), relative) if web_dir is not None else None
    if path is None or not path.is_file() or any(is_hidden(part) for part in relative.split("/")):
        raise NotFound("web file", relative)
    headers = dict(ASSET_HEADERS)
    if path.suffix in CONTENT_TYPES:
        headers["Content-Type"] = CONTENT_TYPES[path.suffix]
    return web.FileResponse(path, headers=headers)
