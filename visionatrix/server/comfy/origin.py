"""ComfyUI's guard for a server on loopback (``docs/comfy-api.md``, "Editor shell and user data"): a browser page
from another site must not drive a server that trusts whoever can reach localhost.

When the ``Host`` header names a loopback host (``localhost``, ``*.localhost``, ``127.0.0.0/8``, ``::1``) and an
``Origin`` header is present, the Origin's host must be the same name; its port must match too when both carry
one. Otherwise the request is refused with 403 before any handler runs. ``OPTIONS`` requests are never refused
here, and requests to a non-loopback ``Host`` (a server exposed on purpose) are not checked.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from visionatrix.server.middlewares import error_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _split(netloc: str) -> tuple[str | None, int | None]:
    """``(host, port)`` of ``host[:port]``; ``(None, None)`` when it does not parse."""
    try:
        parts = urlsplit(f"//{netloc}")
        return parts.hostname, parts.port
    except ValueError:
        return None, None


def is_loopback(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_cross_site(host_header: str, origin_header: str) -> bool:
    """Whether a request with these headers must be refused."""
    host, host_port = _split(host_header)
    if host is None or not is_loopback(host):
        return False
    try:
        origin = urlsplit(origin_header.strip())
        origin_host, origin_port = origin.hostname, origin.port
    except ValueError:
        return True
    if origin_host is None or origin_host != host:
        return True
    return host_port is not None and origin_port is not None and host_port != origin_port


@web.middleware
async def origin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    origin = request.headers.get(hdrs.ORIGIN)
    host = request.headers.get(hdrs.HOST)
    if request.method != hdrs.METH_OPTIONS and origin is not None and host and is_cross_site(host, origin):
        return error_response(403, "cross_origin_refused",
                              f"a page from {origin!r} may not call this server on {host!r}: a server on "
                              "loopback only answers pages it served itself", {"origin": origin, "host": host})
    return await handler(request)
