"""Refuses (400 ``invalid_url``) a request whose path or query holds a NUL or another control character once
percent-decoded (``/history/a%00``, ``?flow=a%00``): no route takes one, and PostgreSQL refuses a NUL in any
string, so such a value reaching a query would be a 500."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from aiohttp import web

from visionatrix.server.errors import BadRequest

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def url_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    path, _, query = request.raw_path.partition("?")
    for part, text in (("path", path), ("query", query.replace("+", " "))):
        decoded = unquote(text, errors="replace")
        found = _CONTROL.search(decoded)
        if found is not None:
            raise BadRequest("invalid_url", f"the URL's {part} holds a control character "
                             f"(U+{ord(found.group()):04X}); percent-decoded, no path or query value may",
                             {"part": part})
    return await handler(request)
