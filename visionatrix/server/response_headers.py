"""Headers every response carries (``docs/security.md``, "Response headers"): no page of this server may be framed
by another site (clickjacking), no response is sniffed into another type, and no URL leaks to other sites in
``Referer``.

Set in ``on_response_prepare``, so JSON, static files, streamed responses, errors and WebSocket upgrades all get
them. A header a handler set itself is kept; a ``Content-Security-Policy`` a page sets gets ``frame-ancestors
'none'`` added when it has no ``frame-ancestors`` of its own.
"""

from __future__ import annotations

from aiohttp import hdrs, web

FRAME_ANCESTORS = "frame-ancestors 'none'"
HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


async def add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` handler."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    policy = response.headers.get(hdrs.CONTENT_SECURITY_POLICY)
    if policy is None:
        response.headers[hdrs.CONTENT_SECURITY_POLICY] = FRAME_ANCESTORS
    elif "frame-ancestors" not in policy.lower():
        response.headers[hdrs.CONTENT_SECURITY_POLICY] = f"{policy.rstrip().rstrip(';')}; {FRAME_ANCESTORS}"
