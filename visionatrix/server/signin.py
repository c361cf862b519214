"""The sign-in middleware: who the caller is (:class:`Identity`) and whether the route lets them in.

Credentials, in order: the web UI's session cookie, ``Authorization: Basic`` (a user's name and password, for
scripts), ``Authorization: Bearer`` (a user's API token, or on the worker routes a worker token / ``WORKER_AUTH``).
With sign-in off (``VIX_AUTH=off``, or the default on a loopback bind) everyone is the single admin (``OPEN``) and
only the worker routes keep their ``WORKER_AUTH``. With it on, ``access.py`` says which role each route needs: an
anonymous caller gets 401, a signed-in one without the role 403, a failed sign-in past its limit 429.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from dataclasses import dataclass, field

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from visionatrix.auth.store import AuthStore, UserRecord
from visionatrix.server import access
from visionatrix.server.identity import ANONYMOUS, IDENTITY, OPEN, Identity
from visionatrix.server.middlewares import Handler, error_response
from visionatrix.server.signin_limits import FailureLimiter
from visionatrix.server.worker_auth import WorkerCredentials

SESSION_COOKIE = "vix_session"
REALM = "visionatrix"
BASIC_CACHE_S = 300.0
"""A name and password that verified are remembered (as a hash) this long, so a script's every call does not pay
for scrypt; the user's state (disabled, a new password) is still read on every call."""
EDITOR_PAGES = ("/comfy", "/comfy/", "/comfy/index.html")


@dataclass
class SignIn:
    """What the middleware and the sign-in routes share: the store, the failure limiter, the Basic cache."""

    store: AuthStore
    required: bool
    worker_credentials: WorkerCredentials | None
    session_ttl_s: float
    limiter: FailureLimiter = field(default_factory=FailureLimiter)
    _basic_ok: dict[bytes, tuple[int, str, float]] = field(default_factory=dict)
    """sha256(name, password) -> (user id, the password hash it verified against, until when)."""

    def user_identity(self, user: UserRecord, via: str) -> Identity:
        return Identity(user_id=user.id, name=user.name, role="admin" if user.is_admin else "user", via=via)

    async def password_sign_in(self, address: str, name: str, password: str) -> UserRecord | None:
        """The user when ``name``/``password`` are right; None when wrong. ``TooManyAttempts`` past the limit."""
        wait = self.limiter.retry_after(address, name)
        if wait is not None:
            raise TooManyAttempts(wait)
        user = await self.store.authenticate(name, password)
        if user is None:
            self.limiter.failed(address, name)
        else:
            self.limiter.succeeded(name)
        return user

    async def _basic(self, request: web.Request, value: str) -> Identity | None:
        try:
            name, colon, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError):
            return None
        if not colon:
            return None
        key = hashlib.sha256(f"{name}\0{password}".encode("utf-8", "surrogatepass")).digest()
        cached = self._basic_ok.get(key)
        if cached is not None and cached[2] > time.monotonic():
            found = await self.store.credentials(cached[0])
            if found is not None and not found[0].disabled and found[0].name == name and found[1] == cached[1]:
                return self.user_identity(found[0], "basic")
            self._basic_ok.pop(key, None)  # disabled, renamed or a new password since: verify afresh
        user = await self.password_sign_in(request.remote or "", name, password)
        if user is None:
            return None
        found = await self.store.credentials(user.id)
        if found is not None:
            if len(self._basic_ok) > 10_000:
                self._basic_ok.clear()
            self._basic_ok[key] = (user.id, found[1], time.monotonic() + BASIC_CACHE_S)
        return self.user_identity(user, "basic")

    async def _bearer(self, secret: str, kinds: tuple[str, ...]) -> Identity | None:
        resolved = await self.store.resolve(secret.strip(), kinds)
        if resolved is None:
            return None
        token, user = resolved
        if token.kind == "worker":
            return Identity(user_id=None, name=token.name, role="worker", via="worker_token")
        assert user is not None
        return self.user_identity(user, "session" if token.kind == "session" else "token")

    async def identify(self, request: web.Request, worker_route: bool) -> Identity | None:
        """The caller; ``ANONYMOUS`` without credentials; None when credentials were given and are wrong."""
        authorization = request.headers.get(hdrs.AUTHORIZATION, "")
        scheme, _, value = authorization.strip().partition(" ")
        if worker_route:
            if self.worker_credentials is not None and self.worker_credentials.accepts(authorization):
                return Identity(user_id=None, name="", role="worker", via="worker_auth")
            if scheme.lower() == "bearer":
                return await self._bearer(value, ("worker",)) or None
            return None if authorization else ANONYMOUS
        if scheme.lower() == "basic":
            return await self._basic(request, value)
        if scheme.lower() == "bearer":
            return await self._bearer(value, ("api",))
        if authorization:
            return None
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            return await self._bearer(cookie, ("session",)) or ANONYMOUS
        return ANONYMOUS


class TooManyAttempts(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed sign-ins; try again in {int(retry_after_s) + 1} s")
        self.retry_after_s = retry_after_s


SIGNIN = web.AppKey("signin", SignIn)


def _unauthorized(signin: SignIn, message: str, worker_route: bool) -> web.Response:
    challenge = f'Bearer realm="{REALM}"'
    if worker_route:
        credentials = signin.worker_credentials
        challenge = credentials.challenge if credentials is not None else f'Bearer realm="{REALM} workers"'
    return error_response(401, "unauthorized", message, None, {"WWW-Authenticate": challenge})


def middleware(signin: SignIn) -> Middleware:
    @web.middleware
    async def sign_in(request: web.Request, handler: Handler) -> web.StreamResponse:
        required = access.required_role(request)
        worker_route = required == "worker"
        if not signin.required and not worker_route:
            request[IDENTITY] = OPEN
            return await handler(request)
        if worker_route and not signin.required and signin.worker_credentials is None:
            request[IDENTITY] = Identity(user_id=None, name="", role="worker", via="open")
            return await handler(request)
        try:
            caller = await signin.identify(request, worker_route)
        except TooManyAttempts as exc:
            return error_response(429, "too_many_attempts", str(exc), {"retry_after_s": int(exc.retry_after_s) + 1},
                                  {"Retry-After": str(int(exc.retry_after_s) + 1)})
        if caller is None:
            if required == "public":
                caller = ANONYMOUS
            else:
                what = "worker credentials (WORKER_AUTH or a worker token)" if worker_route else "credentials"
                return _unauthorized(signin, f"the {what} are wrong, expired or revoked", worker_route)
        request[IDENTITY] = caller
        if caller.role == "anonymous" and request.method in ("GET", "HEAD") and request.path in EDITOR_PAGES:
            raise web.HTTPFound("/?next=/comfy/")  # the editor's files are public; its page needs a sign-in first
        if access.allows(caller.role, required):
            return await handler(request)
        if caller.role == "anonymous":
            what = "worker credentials (WORKER_AUTH or a worker token)" if worker_route else \
                "sign-in (a session, HTTP Basic or an API token)"
            return _unauthorized(signin, f"{request.method} {request.path} requires {what}", worker_route)
        return error_response(403, "forbidden", f"{request.method} {request.path} requires the {required} role; "
                              f"{caller.name or 'this caller'} is {caller.role}", {"required": required})

    return sign_in
