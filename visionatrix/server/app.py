"""``create_app(services)``: the aiohttp application of the REST API under ``/vapi``.

The composition root builds the services (engine, queue, storage, flows, registry, events) and owns their
lifetimes; the application only uses them. It closes its own event streams when it shuts down.
"""

from __future__ import annotations

from aiohttp import web

from visionatrix.server.event_feed import LiveStreams
from visionatrix.server.middlewares import error_middleware
from visionatrix.server.routes import setup_routes
from visionatrix.server.routes.events import STREAMS
from visionatrix.server.services import SERVICES, Services

MAX_JSON_BODY_BYTES = 32 * 1024 * 1024
"""Largest body read whole (a flow or task as JSON); file uploads are streamed and limited by the storage."""


async def _close_streams(app: web.Application) -> None:
    await app[STREAMS].close_all()


def create_app(services: Services) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_JSON_BODY_BYTES)
    app[SERVICES] = services
    app[STREAMS] = LiveStreams()
    setup_routes(app)
    app.on_shutdown.append(_close_streams)
    return app
