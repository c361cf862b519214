"""The official ComfyUI graph editor at ``/comfy/``, served from the ``comfyui-frontend-package`` wheel's ``static``
folder (``docs/comfy-api.md``, "Editor shell and user data").

``index.html`` is never cached (a new wheel takes effect on the next load); the other files are revalidated. The
editor computes its API base from its page's path, so it calls ``/comfy/api/...``, which ``PREFIXES`` registers.
Without the wheel, every ``/comfy/`` page answers 503 naming the package to install.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

from aiohttp import web

from visionatrix.errors import NotFound
from visionatrix.server.comfy import userdata
from visionatrix.server.middlewares import error_response
from visionatrix.server.static_files import confined_file

PACKAGE = "comfyui_frontend_package"
DISTRIBUTION = "comfyui-frontend-package"
MOUNT = "/comfy"
FAVICON_FRAMES = "assets/images/favicon_progress_16x16"
"""Served at the root too: the editor fetches these frames by an absolute path."""
NO_STORE = {"Cache-Control": "no-store, must-revalidate", "Pragma": "no-cache", "Expires": "0"}


def find_static_dir(package: str = PACKAGE) -> Path | None:
    """The wheel's ``static`` folder, or None when the package is not installed (or holds no ``index.html``)."""
    try:
        static = Path(str(importlib.resources.files(package) / "static"))
    except ModuleNotFoundError:
        return None
    return static if (static / "index.html").is_file() else None


class EditorPages:
    """The handlers of ``/comfy/``, bound to one static folder (None: the wheel is missing)."""

    def __init__(self, static_dir: Path | None) -> None:
        self.static_dir = static_dir.resolve() if static_dir is not None else None

    def _missing(self) -> web.Response:
        return error_response(503, "editor_not_installed",
                              f"the graph editor needs the pip package {DISTRIBUTION!r}; install it with "
                              f"'pip install {DISTRIBUTION}'", {"package": DISTRIBUTION})

    async def redirect(self, request: web.Request) -> web.StreamResponse:
        """``/comfy`` to ``/comfy/``: the page loads ``./assets/...``, which only resolve under the slash. The
        Location is relative, so a reverse proxy's sub-path survives."""
        query = f"?{request.query_string}" if request.query_string else ""
        raise web.HTTPFound(f"{MOUNT.lstrip('/')}/{query}")

    async def index(self, request: web.Request) -> web.StreamResponse:
        if self.static_dir is None:
            return self._missing()
        return web.FileResponse(self.static_dir / "index.html", headers=NO_STORE)

    async def favicon_frame(self, request: web.Request) -> web.StreamResponse:
        """``/assets/images/favicon_progress_16x16/<frame>``: the editor asks for its progress favicon at the site's
        root (an absolute path in the bundle), not under ``/comfy/``."""
        if self.static_dir is None:
            return self._missing()
        return await self._serve(f"{FAVICON_FRAMES}/{request.match_info['name']}")

    async def static_file(self, request: web.Request) -> web.StreamResponse:
        if self.static_dir is None:
            return self._missing()
        return await self._serve(request.match_info["path"])

    async def _serve(self, relative: str) -> web.StreamResponse:
        assert self.static_dir is not None
        path = confined_file(self.static_dir, relative)
        if path is None or not path.is_file():
            if relative == userdata.USER_CSS:
                return userdata.no_user_css()
            raise NotFound("editor file", relative)
        if path.name == "index.html":
            return web.FileResponse(path, headers=NO_STORE)
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})


def add_frontend_routes(router: web.UrlDispatcher, *, static_dir: Path | None = None,
                        package: str = PACKAGE) -> None:
    """``GET /comfy/`` (the editor's page, ``/comfy`` redirects there) and ``/comfy/<file>``.

    The folder is ``static_dir`` when given, else the installed ``package``'s; the API routes under ``/comfy/``
    are more specific than ``/comfy/<file>``, so they win in any order of registration.
    """
    pages = EditorPages(static_dir if static_dir is not None else find_static_dir(package))
    router.add_get(MOUNT, pages.redirect)
    router.add_get(f"{MOUNT}/", pages.index)
    router.add_get(f"{MOUNT}/{{path:.+}}", pages.static_file)
    router.add_get(f"/{FAVICON_FRAMES}/{{name}}", pages.favicon_frame)
