"""Which ``Host`` a request may name and which page (``Origin``) may send it (``docs/security.md``, "Allowed hosts
and origins").

Two checks run before any handler, for every route and every WebSocket upgrade:

1. The ``Host`` header must name an allowed host (DNS rebinding: a page of ``evil.test`` whose name later resolves
   to this machine sends ``Host: evil.test``). Allowed are loopback names (``localhost``, ``*.localhost``,
   ``127.0.0.0/8``, ``::1``), the bind address when it is one host (not ``0.0.0.0``/``::``), an IP address equal
   to the local address the connection arrived on (a rebinding page always names a host, never an address), and
   ``VIX_ALLOWED_HOSTS`` (names, ``*.example.com`` for its subdomains, ``*`` for any). Otherwise 403.
2. An ``Origin`` header, when present (every method but ``OPTIONS``), must be the request's own origin: same
   scheme, host and port, where a missing port means the scheme's default (``http`` 80, ``https`` 443). The
   request's scheme is ``X-Forwarded-Proto`` or ``Forwarded: proto=`` when a proxy sets one (a browser page cannot
   set either without a CORS preflight, which this server never grants), else the connection's. Otherwise 403.

A request without a ``Host`` (HTTP/1.0 tools) is not a browser's and passes the first check.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import hdrs, web

from visionatrix.security_config import SecuritySettings, is_loopback_bind
from visionatrix.server.middlewares import error_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

ANY_HOST = "*"
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
SETTING = "VIX_ALLOWED_HOSTS"


def split_host(value: str) -> tuple[str, int | None]:
    """``(host, port)`` of a ``Host`` header (``name[:port]``, ``[v6]:port``), host lowercased without a trailing
    dot; ValueError when it is not one."""
    value = value.strip()
    if not value or any(ch in value for ch in "/?#@\\ \t"):
        raise ValueError(value)
    parts = urlsplit(f"//{value}")
    host, port = parts.hostname, parts.port  # .port raises ValueError when out of range
    if not host:
        raise ValueError(value)
    return _norm(host), port


def _norm(host: str) -> str:
    return host.strip().strip("[]").lower().rstrip(".")


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@dataclass(frozen=True)
class AllowedHosts:
    names: frozenset[str] = frozenset()
    """Names and addresses allowed besides loopback ones."""
    suffixes: tuple[str, ...] = ()
    """``.example.com`` from ``*.example.com``: any subdomain."""
    any_host: bool = False

    @classmethod
    def build(cls, allowed_hosts: Iterable[str], bind_host: str | None = None) -> AllowedHosts:
        """The hosts of ``VIX_ALLOWED_HOSTS`` plus the bind address when it is one host."""
        names: set[str] = set()
        suffixes: list[str] = []
        any_host = False
        for entry in allowed_hosts:
            entry = entry.strip().lower()
            if entry == ANY_HOST:
                any_host = True
            elif entry.startswith("*."):
                suffixes.append(_norm(entry[1:]) if entry.endswith(".") else entry[1:])
            elif entry:
                names.add(_entry_host(entry))
        if bind_host:
            bind = _norm(bind_host)
            address = _address(bind)
            if bind and (address is None or not address.is_unspecified):
                names.add(str(address) if address is not None else bind)
        return cls(frozenset(names), tuple(suffixes), any_host)

    def allows(self, host: str, local_address: str | None = None) -> bool:
        """Whether a request may name ``host`` (from :func:`split_host`); ``local_address``: the address the
        connection arrived on."""
        if self.any_host or is_loopback_bind(host):
            return True
        address = _address(host)
        if address is not None:
            local = _address(local_address) if local_address else None
            return (local is not None and address == local and not address.is_unspecified) or \
                str(address) in self.names
        return host in self.names or any(host.endswith(suffix) for suffix in self.suffixes)

    def describe(self) -> str:
        """The allowed hosts in words, for the startup log."""
        if self.any_host:
            return "any host (VIX_ALLOWED_HOSTS=*)"
        extra = sorted(self.names) + [f"*{suffix}" for suffix in self.suffixes]
        listed = f", {', '.join(extra)}" if extra else ""
        return (f"loopback names, the address a client connected to{listed}; other names are refused: add them to "
                f"{SETTING} (';'-separated, '*' for any)")


def _entry_host(entry: str) -> str:
    """A ``VIX_ALLOWED_HOSTS`` entry without a port (``host``, ``host:port``, ``[v6]``, bare v6)."""
    host = _norm(entry)
    if _address(host) is None:
        with contextlib.suppress(ValueError):
            host, _ = split_host(entry)
    address = _address(host)
    return str(address) if address is not None else host


def request_scheme(request: web.Request) -> str:
    """``http`` or ``https`` as the browser sees it: a proxy's ``X-Forwarded-Proto``/``Forwarded`` when set."""
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",", 1)[0].strip().lower()
    if not forwarded and request.forwarded:
        forwarded = str(request.forwarded[0].get("proto", "")).strip().lower()
    return forwarded if forwarded in ("http", "https") else request.scheme


def is_same_origin(origin: str, scheme: str, host: str, port: int | None) -> bool:
    """Whether ``origin`` is exactly ``scheme://host:port`` (default ports filled in on both sides)."""
    try:
        parts = urlsplit(origin.strip())
        origin_host, origin_port = parts.hostname, parts.port
    except ValueError:
        return False
    origin_scheme = parts.scheme.lower()
    if origin_scheme not in ("http", "https") or not origin_host or parts.path not in ("", "/"):
        return False
    return (origin_scheme == scheme and _norm(origin_host) == host
            and (origin_port or DEFAULT_PORTS[origin_scheme]) == (port or DEFAULT_PORTS.get(scheme, 80)))


def _local_address(request: web.Request) -> str | None:
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    return str(sockname[0]) if isinstance(sockname, tuple) and sockname else None


def host_guard(security: SecuritySettings, bind_host: str | None) -> Middleware:
    """The middleware that refuses foreign hosts and cross-origin requests (module docstring)."""
    allowed = AllowedHosts.build(security.allowed_hosts, bind_host)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        host_header = request.headers.get(hdrs.HOST)
        origin = request.headers.get(hdrs.ORIGIN)
        if host_header is None:
            if origin is not None and request.method != hdrs.METH_OPTIONS:
                return _cross_origin(origin, "")
            return await handler(request)
        try:
            host, port = split_host(host_header)
        except ValueError:
            return error_response(400, "invalid_host", f"the Host header {host_header!r} is not a host name",
                                  {"host": host_header})
        if not allowed.allows(host, _local_address(request)):
            return error_response(
                403, "host_not_allowed",
                f"this server does not answer to the host {host!r}: add it to {SETTING} (names separated by ';', "
                "'*' for any) if this server is meant to be reached by that name",
                {"host": host_header, "setting": SETTING})
        if (origin is not None and request.method != hdrs.METH_OPTIONS
                and not is_same_origin(origin, request_scheme(request), host, port)):
            return _cross_origin(origin, host_header)
        return await handler(request)

    return guard


def _cross_origin(origin: str, host: str) -> web.Response:
    return error_response(403, "cross_origin_refused",
                          f"a page from {origin!r} may not call this server on {host!r}: only pages this server "
                          "served itself (same scheme, host and port) may", {"origin": origin, "host": host})
