"""Slow clients may not hold a connection forever (``docs/security.md``, "Timeouts").

- Header timeout (``VIX_HEADER_TIMEOUT_S``): aiohttp's keep-alive timer, armed when a connection opens and after
  each response, closes a connection that has not delivered a whole request line and headers by then. It is the
  runner's ``keepalive_timeout`` (:func:`runner_options`), so an idle keep-alive connection closes after the same
  time.
- Body timeout (``VIX_BODY_TIMEOUT_S``): while a handler waits for body bytes that do not come for that long, the
  read fails with :class:`BodyStalled`; the request is answered 408 and the connection closed
  (:func:`body_timeouts`). A handler busy elsewhere while the client waits is not a stalled client: the clock only
  runs while the handler waits for the body.

aiohttp's body reader waits for data inside its timer context (``StreamReader._timer``; a no-op on the server
side), so the body timeout is that timer, set per request; ``tests/unit/server/test_slow_clients.py`` fails if a
new aiohttp stops honouring it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from aiohttp import web
from aiohttp.helpers import BaseTimerContext
from aiohttp.streams import StreamReader

from visionatrix.security_config import SecuritySettings
from visionatrix.server.middlewares import error_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


class BodyStalled(TimeoutError):
    """The client sent no byte of the request body for the body timeout."""


def runner_options(security: SecuritySettings) -> dict[str, Any]:
    """Keyword arguments for ``web.AppRunner`` (and test servers) that enforce the header timeout."""
    return {"keepalive_timeout": security.header_timeout_s}


class _BodyTimer(BaseTimerContext):
    """Armed while a reader waits for body bytes; fails the read when none came for ``timeout_s``."""

    __slots__ = ("_handle", "_reader", "_timeout_s")

    def __init__(self, reader: StreamReader, timeout_s: float) -> None:
        self._reader = reader
        self._timeout_s = timeout_s
        self._handle: asyncio.TimerHandle | None = None

    def __enter__(self) -> BaseTimerContext:
        self._handle = asyncio.get_running_loop().call_later(self._timeout_s, self._expire)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc_val: BaseException | None,
                 exc_tb: TracebackType | None) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _expire(self) -> None:
        self._handle = None
        self._reader.set_exception(BodyStalled(f"no byte of the request body came for {self._timeout_s:g} s"))


def body_timeouts(security: SecuritySettings) -> Middleware:
    """The middleware that gives each request's body reader the body timeout and answers a stalled body 408."""
    timeout_s = security.body_timeout_s

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        content = request.content
        if request.body_exists and isinstance(content, StreamReader) and not content.is_eof():
            content._timer = _BodyTimer(content, timeout_s)
        try:
            return await handler(request)
        except BodyStalled as exc:
            response = error_response(408, "body_timeout", f"{exc}: the request was abandoned (VIX_BODY_TIMEOUT_S)",
                                      {"timeout_s": timeout_s})
            response.force_close()
            return response

    return middleware
