"""Where a webhook may go: the checks of ``webhook_url`` and ``webhook_headers`` when a task is created, and the
address check when it is delivered.

At creation a URL must be http(s), name a syntactically valid host and carry no credentials or fragment; headers
are a small object of string → string that cannot override what the server sets (``Host``, ``Content-Length``,
``Content-Type``, hop-by-hop headers, the ``X-Visionatrix-*`` signature headers). At delivery the host is resolved
here, and when ANY of its addresses is not a public unicast address (loopback, private, link-local, shared,
multicast, reserved, unspecified; IPv4-mapped, 6to4 and Teredo IPv6 looked through) the delivery is refused unless
the host is in ``VIX_WEBHOOK_ALLOW_HOSTS``. The connection then goes to exactly those vetted addresses
(``VettedResolver``): the name is never resolved a second time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Sequence
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from visionatrix.addresses import address_problem

MAX_URL_CHARS = 2048
MAX_HEADERS = 20
MAX_HEADER_NAME_CHARS = 128
MAX_HEADER_VALUE_CHARS = 4096
RESERVED_HEADERS = frozenset({
    "host", "content-length", "content-type", "transfer-encoding", "connection", "keep-alive", "te", "trailer",
    "trailers", "upgrade", "proxy-authorization", "proxy-authenticate", "proxy-connection", "expect"})
"""Headers a task may not set: the server sets them, or they belong to one hop of the connection."""
RESERVED_PREFIX = "x-visionatrix-"
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookRefused(Exception):
    """The webhook's host resolves to an address it may not reach (or does not resolve)."""


def check_webhook(url: Any, headers: Any, problems: dict[str, str]) -> dict[str, Any] | None:
    """The ``tasks.webhook`` value for ``url`` and ``headers`` as a request gave them (None: no webhook); each
    problem goes into ``problems`` under ``webhook_url`` / ``webhook_headers``."""
    if url is None or url == "":
        if headers not in (None, {}):
            problems["webhook_headers"] = "given without a webhook_url"
        return None
    checked_url = _url_problem(url)
    if checked_url is not None:
        problems["webhook_url"] = checked_url
    checked_headers = _headers(headers, problems)
    if checked_url is not None or checked_headers is None:
        return None
    return {"url": url, "headers": checked_headers}


def _url_problem(url: Any) -> str | None:
    if not isinstance(url, str):
        return f"expected an http(s) URL as a string, got {type(url).__name__}"
    if len(url) > MAX_URL_CHARS:
        return f"longer than {MAX_URL_CHARS} characters"
    if _CONTROL_RE.search(url) or " " in url:
        return "contains spaces or control characters"
    try:
        parsed = URL(url)
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parsed.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if parsed.user is not None or parsed.password is not None:
        return "must not carry credentials (send them in webhook_headers)"
    if parsed.fragment:
        return "must not have a #fragment"
    host = parsed.raw_host
    if not host or not host_syntax_ok(host):
        return "has no valid host name or IP address"
    try:
        parsed.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        return "has an invalid port"
    return None


def host_syntax_ok(host: str) -> bool:
    """Whether ``host`` (as in a URL, IPv6 without brackets) is an IP address or a DNS name."""
    if _ip(host) is not None:
        return True
    name = host.rstrip(".")
    try:
        name = name.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    return 0 < len(name) <= 253 and all(_LABEL_RE.match(label) for label in name.split("."))


def _headers(headers: Any, problems: dict[str, str]) -> dict[str, str] | None:
    if headers is None:
        return {}
    if not isinstance(headers, dict):
        problems["webhook_headers"] = f"expected an object of header name -> value, got {type(headers).__name__}"
        return None
    if len(headers) > MAX_HEADERS:
        problems["webhook_headers"] = f"at most {MAX_HEADERS} headers"
        return None
    seen: set[str] = set()
    for name, value in headers.items():
        why = _header_problem(name, value, seen)
        if why is not None:
            problems["webhook_headers"] = why
            return None
    return dict(headers)


def _header_problem(name: Any, value: Any, seen: set[str]) -> str | None:
    if not isinstance(name, str) or not _TOKEN_RE.match(name) or len(name) > MAX_HEADER_NAME_CHARS:
        return f"{str(name)[:40]!r} is not a valid header name (letters, digits and -, at most " \
               f"{MAX_HEADER_NAME_CHARS} characters)"
    lowered = name.lower()
    if lowered in RESERVED_HEADERS or lowered.startswith(RESERVED_PREFIX):
        return f"{name!r} is set by the server and may not be given"
    if lowered in seen:
        return f"{name!r} given more than once"
    seen.add(lowered)
    if not isinstance(value, str):
        return f"the value of {name!r} must be a string, got {type(value).__name__}"
    if len(value) > MAX_HEADER_VALUE_CHARS:
        return f"the value of {name!r} is longer than {MAX_HEADER_VALUE_CHARS} characters"
    if _CONTROL_RE.search(value.replace("\t", " ")):
        return f"the value of {name!r} contains control characters (CR, LF, ...)"
    return None


# -- delivery time: which addresses may be reached ----------------------------------------------------------------


def _ip(text: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def blocked_reason(address: IpAddress) -> str | None:
    """Why ``address`` may not be reached by a webhook (None: a public unicast address)."""
    problem = address_problem(address)
    if problem is None:
        return None
    return f"{address} is not a public address" if problem == "non-public" else f"{address} is a {problem} address"


def host_allowed(host: str, allow_hosts: Sequence[str]) -> bool:
    """Whether ``VIX_WEBHOOK_ALLOW_HOSTS`` lets webhooks reach ``host`` whatever it resolves to."""
    name = host.strip("[]").rstrip(".").lower()
    for allowed in allow_hosts:
        entry = allowed.strip().strip("[]").rstrip(".").lower()
        if entry == "*" or entry == name:
            return True
        mine, theirs = _ip(entry), _ip(name)
        if mine is not None and mine == theirs:
            return True
    return False


async def vetted_addresses(host: str, port: int, allow_hosts: Sequence[str]) -> list[ResolveResult]:
    """The addresses of ``host`` a webhook may connect to, resolved once here; ``WebhookRefused`` when any of them
    is not public and the host is not allowed, or when the name does not resolve."""
    allowed = host_allowed(host, allow_hosts)
    literal = _ip(host)
    if literal is not None:
        addresses = [literal]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise WebhookRefused(f"{host} does not resolve ({exc})") from None
        addresses = list(dict.fromkeys(ip for info in infos if (ip := _ip(str(info[4][0]))) is not None))
    if not addresses:
        raise WebhookRefused(f"{host} has no address")
    if not allowed:
        for address in addresses:
            why = blocked_reason(address)
            if why is not None:
                raise WebhookRefused(f"{host}: {why} (add the host to VIX_WEBHOOK_ALLOW_HOSTS to allow it)")
    return [{"hostname": host, "host": str(address), "port": port,
             "family": socket.AF_INET6 if address.version == 6 else socket.AF_INET, "proto": 0,
             "flags": socket.AI_NUMERICHOST} for address in addresses]


class VettedResolver(AbstractResolver):
    """A resolver that knows only the addresses checked for one delivery: aiohttp connects to them and to nothing
    else (a name it was not given, say after a redirect, fails)."""

    def __init__(self, host: str, addresses: list[ResolveResult]) -> None:
        self.host = host
        self.addresses = addresses

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        if host != self.host:
            raise OSError(f"{host} was not vetted for this webhook")
        return [{**address, "port": port or address["port"]} for address in self.addresses]

    async def close(self) -> None:
        return None
