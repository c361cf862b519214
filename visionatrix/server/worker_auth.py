"""The worker credentials (``WORKER_AUTH``): what the routes under ``/vapi/worker/`` require when they are set.

``user:password`` → ``Authorization: Basic base64(user:password)``; a value without ``:`` is a token →
``Authorization: Bearer <token>``. A request without them, or with wrong ones, is answered 401 ``unauthorized``
with a ``WWW-Authenticate`` challenge. The comparison takes the same time whatever the given value is (both sides
are hashed first, so not even the length leaks). Every other route is unaffected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from aiohttp import web
from aiohttp.typedefs import Middleware

from visionatrix.server.middlewares import Handler, error_response

PROTECTED_PREFIX = "/vapi/worker/"
REALM = "visionatrix workers"


class WorkerCredentials:
    """The expected ``Authorization`` of a worker, built from the ``WORKER_AUTH`` value."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("worker credentials must not be empty")
        self.scheme = "Basic" if ":" in secret else "Bearer"
        self._expected = hashlib.sha256(secret.encode()).digest()

    @property
    def challenge(self) -> str:
        """The ``WWW-Authenticate`` value of a 401."""
        return f'{self.scheme} realm="{REALM}"'

    def accepts(self, authorization: str | None) -> bool:
        """Whether ``authorization`` (the header's value) carries these credentials."""
        given = self._given(authorization or "") or b""  # empty never matches: the secret is not empty
        return hmac.compare_digest(hashlib.sha256(given).digest(), self._expected)

    def _given(self, authorization: str) -> bytes | None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != self.scheme.lower():
            return None
        value = value.strip()
        if self.scheme == "Bearer":
            return value.encode()
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None


def is_protected(request: web.Request) -> bool:
    """Whether the request is for a worker route: by the matched route's template, and by the decoded path (so an
    encoded slash cannot route around the check, and an unknown worker path is refused like a known one)."""
    resource = request.match_info.route.resource
    template = resource.canonical if resource is not None else ""
    return template.startswith(PROTECTED_PREFIX) or request.path.startswith(PROTECTED_PREFIX)


def middleware(secret: str | None) -> Middleware:
    """The middleware that checks the worker credentials ``secret``; when None it lets every request through."""
    credentials = WorkerCredentials(secret) if secret is not None else None

    @web.middleware
    async def check_worker_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if credentials is None or not is_protected(request):
            return await handler(request)
        if not credentials.accepts(request.headers.get("Authorization")):
            return error_response(401, "unauthorized",
                                  f"worker routes require the worker credentials (Authorization: "
                                  f"{credentials.scheme} ...)", None, {"WWW-Authenticate": credentials.challenge})
        return await handler(request)

    return check_worker_auth
