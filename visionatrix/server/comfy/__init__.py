"""ComfyUI's HTTP and WebSocket API on our backend (``docs/comfy-api.md``): ComfyUI API clients and the official
graph editor (served at ``/comfy/``) drive our queue and workers through it.

Every route is registered under each of ``PREFIXES``: plain (``/prompt``, what API clients call), ``/api`` (what
the editor calls), and both again under ``/comfy`` — the editor computes its API base from its page's path.
Each module exports ``add_routes(router, prefix)``.
"""

from __future__ import annotations

from aiohttp import web

PREFIXES = ("", "/api", "/comfy", "/comfy/api")


def setup_comfy_routes(app: web.Application) -> None:
    from visionatrix.server.comfy import (
        files,
        frontend,
        internal,
        jobs,
        object_info,
        prompts,
        queue_history,
        shell,
        socket,
        templates,
        userdata,
    )

    internal.setup(app)
    files.setup(app)
    socket.setup(app)
    templates.setup(app)
    for module in (shell, templates, userdata, files, object_info, prompts, queue_history, jobs, socket,
                   internal):
        for prefix in PREFIXES:
            module.add_routes(app.router, prefix)
    frontend.add_frontend_routes(app.router)
