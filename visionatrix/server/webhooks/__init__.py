"""Task webhooks: a task created with ``webhook_url`` (and optional ``webhook_headers``) has a signed JSON POST sent
there when it finishes, fails or is cancelled (``docs/security.md``, "Webhooks").

``targets`` checks the URL and headers at creation and the addresses at delivery, ``signing`` signs and keeps the
key, ``delivery`` sends and retries in the background, ``watcher`` learns of the tasks' ends. ``start``/``stop``
are the application's startup and shutdown hooks.
"""

from __future__ import annotations

from aiohttp import web

from visionatrix.server.services import SERVICES
from visionatrix.server.webhooks.delivery import Deliverer
from visionatrix.server.webhooks.signing import load_secret
from visionatrix.server.webhooks.watcher import WebhookWatcher


class Webhooks:
    """The application's webhook machinery, made at startup (``app[WEBHOOKS]``)."""

    def __init__(self) -> None:
        self.deliverer: Deliverer | None = None
        self.watcher: WebhookWatcher | None = None


WEBHOOKS = web.AppKey("webhooks", Webhooks)


async def start(app: web.Application) -> None:
    """Load (or make) the signing key and start watching for tasks' ends."""
    services = app[SERVICES]
    security = services.security
    secret = await load_secret(services.queue.engine, security.webhook_secret)
    webhooks = app[WEBHOOKS]
    webhooks.deliverer = Deliverer(secret, allow_hosts=tuple(security.webhook_allow_hosts))
    webhooks.watcher = WebhookWatcher(services.queue, services.events, webhooks.deliverer)
    webhooks.watcher.start()


async def stop(app: web.Application) -> None:
    webhooks = app[WEBHOOKS]
    if webhooks.watcher is not None:
        await webhooks.watcher.stop()
    if webhooks.deliverer is not None:
        await webhooks.deliverer.stop()
