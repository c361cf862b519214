"""``create_app(services)``: the aiohttp application of the REST API under ``/vapi``.

The composition root builds the services (engine, queue, storage, flows, registry, events) and owns their
lifetimes; the application only uses them. When it shuts down it closes its own event streams and answers the
worker claims that wait for a task, so neither holds the stop up. The sign-in middleware (``signin.py``) decides
who may call each route (``access.py``); ``WORKER_AUTH`` or a worker token guards the worker routes.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from visionatrix.auth.store import AuthStore
from visionatrix.queue.prompts import PromptTasks
from visionatrix.server import signin, webhooks
from visionatrix.server.claim_ledger import ClaimLedger
from visionatrix.server.comfy import setup_comfy_routes
from visionatrix.server.event_feed import LiveStreams
from visionatrix.server.external_changes import ExternalChanges
from visionatrix.server.host_guard import host_guard
from visionatrix.server.middlewares import error_middleware
from visionatrix.server.response_headers import add_security_headers
from visionatrix.server.routes import setup_routes
from visionatrix.server.routes.events import STREAMS
from visionatrix.server.routes.worker_api import CLAIMS, CLAIMS_CLOSING, WORKER_NODE_TYPES, stop_claims
from visionatrix.server.services import SERVICES, Services
from visionatrix.server.slow_clients import body_timeouts
from visionatrix.server.task_owners import TASK_OWNERS, TaskOwners
from visionatrix.server.url_guard import url_guard
from visionatrix.server.worker_auth import WorkerCredentials

EXTERNAL_CHANGES = web.AppKey("external_changes", ExternalChanges)

MAX_JSON_BODY_BYTES = 32 * 1024 * 1024
"""Largest body read whole (a flow or task as JSON); file uploads are streamed and limited by the storage."""


async def _close_streams(app: web.Application) -> None:
    await app[STREAMS].close_all()
    await app[EXTERNAL_CHANGES].stop()


async def _watch_external_changes(app: web.Application) -> None:
    app[EXTERNAL_CHANGES].start()


def _signin(services: Services) -> signin.SignIn:
    """Sign-in on when ``VIX_AUTH=on``, or by default on a non-loopback bind."""
    credentials = WorkerCredentials(services.worker_auth) if services.worker_auth else None
    return signin.SignIn(store=AuthStore(services.queue.engine),
                         required=services.security.auth_required(services.bind_host),
                         worker_credentials=credentials, session_ttl_s=services.security.session_ttl_s)


def create_app(services: Services) -> web.Application:
    sign_in = _signin(services)
    middlewares = [error_middleware, host_guard(services.security, services.bind_host), url_guard,
                   body_timeouts(services.security), signin.middleware(sign_in)]
    app = web.Application(middlewares=middlewares, client_max_size=MAX_JSON_BODY_BYTES)
    app.on_response_prepare.append(add_security_headers)
    app[signin.SIGNIN] = sign_in
    app[TASK_OWNERS] = TaskOwners(services.queue)
    if services.prompts is None:
        services.prompts = PromptTasks(services.queue)
    app[SERVICES] = services
    app[WORKER_NODE_TYPES] = {}
    app[STREAMS] = LiveStreams()
    app[CLAIMS_CLOSING] = asyncio.Event()
    app[CLAIMS] = ClaimLedger()
    setup_routes(app)
    setup_comfy_routes(app)
    app[EXTERNAL_CHANGES] = ExternalChanges(services.queue, services.events, app[STREAMS])
    app.on_startup.append(_watch_external_changes)
    app.on_shutdown.append(_close_streams)
    app.on_shutdown.append(stop_claims)
    app[webhooks.WEBHOOKS] = webhooks.Webhooks()
    app.on_startup.append(webhooks.start)
    app.on_shutdown.append(webhooks.stop)
    return app
