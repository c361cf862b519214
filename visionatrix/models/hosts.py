"""Where model downloads may go: the download policy, the host allow-list and the address rules.

A download URL must be http(s), its host must be on the allow-list (a name allows itself and its subdomains; the
catalog's hosts bring the CDN hosts they redirect to, :data:`CDN_HOSTS`), and every address the host resolves to must
be public: loopback, private, link-local, multicast, reserved and unspecified addresses are refused unless the policy
names that host or IP explicitly (``VIX_DOWNLOAD_ALLOW_HOSTS=127.0.0.1``). :class:`VettedResolver` applies the address
rule when aiohttp connects, so the connection goes to an address that was checked (no DNS rebinding between the check
and the connect). Tokens: :func:`token_for` says which token a host may receive.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from visionatrix.addresses import address_problem
from visionatrix.errors import DownloadRefused

CDN_HOSTS: Mapping[str, tuple[str, ...]] = {
    # Hugging Face answers /resolve/ URLs with a redirect to its LFS or Xet storage: cdn-lfs*.huggingface.co
    # (a subdomain already), cas-bridge.xethub.hf.co, *.hf.co.
    "huggingface.co": ("hf.co",),
    "hf.co": ("huggingface.co",),
    # CivitAI redirects /api/download/ to signed URLs on its Cloudflare R2 delivery buckets or Backblaze
    # (b2.civitai.com, a subdomain already). "*" stands for exactly one DNS label (the R2 account id).
    "civitai.com": ("civitai-delivery-worker-prod.*.r2.cloudflarestorage.com",
                    "civitai-prod.*.r2.cloudflarestorage.com"),
}
"""Hosts a catalog host redirects downloads to, allowed together with it (a name allows its subdomains too)."""

TOKEN_HOSTS: Mapping[str, str] = {"huggingface.co": "HF_TOKEN", "civitai.com": "CIVITAI_TOKEN"}
"""Which token (by its environment variable) a host and its subdomains may receive."""

ANY_HOST = "*"
_NUMERIC_HOST = re.compile(r"^[0-9.]+$|^0x", re.IGNORECASE)


@dataclass(frozen=True)
class DownloadPolicy:
    """What downloads may reach and how hard they try."""

    allow_hosts: frozenset[str] | None
    """Host names or IPs downloads may reach (a name allows its subdomains and its :data:`CDN_HOSTS`); None: any
    public host."""
    hf_token: str | None = None
    civitai_token: str | None = None
    retries: int = 5
    backoff_s: float = 0.5
    timeout_s: float = 30
    chunk_bytes: int = 1 << 20
    private_hosts: frozenset[str] | None = None
    """Host names or IPs that may resolve to loopback/private/link-local addresses (exact names, no subdomains);
    None: the names in ``allow_hosts``. :func:`policy_from_settings` sets it to the operator's own list only, so a
    catalog entry cannot open a private address."""
    host_addresses: Mapping[str, str] = field(default_factory=dict)
    """Fixed answers for host names (like curl's ``--resolve``): host -> IP. The address rules still apply."""
    retry_after_max_s: float = 30.0
    """The longest ``Retry-After`` of a 429/503 that is honoured."""

    def __repr__(self) -> str:  # never show tokens
        return (f"DownloadPolicy(allow_hosts={self.allow_hosts!r}, private_hosts={self.private_hosts!r}, "
                f"hf_token={'set' if self.hf_token else None}, civitai_token={'set' if self.civitai_token else None},"
                f" retries={self.retries})")


def policy_from_settings(allow_hosts: Iterable[str] | None, catalog_hosts: Iterable[str], *,
                         hf_token: str | None, civitai_token: str | None) -> DownloadPolicy:
    """The policy for ``Settings.download_allow_hosts`` (None: the catalog's hosts, with their CDNs; ``*``: any
    public host). Only the operator's own list may name private addresses; the catalog's hosts never do. Tune the
    rest with ``dataclasses.replace``."""
    if allow_hosts is None:
        allowed: frozenset[str] | None = frozenset(_norm(h) for h in catalog_hosts)
        private: frozenset[str] = frozenset()
    else:
        named = frozenset(_norm(h) for h in allow_hosts)
        allowed = None if ANY_HOST in named else named
        private = named - {ANY_HOST}
    return DownloadPolicy(allow_hosts=allowed, private_hosts=private, hf_token=hf_token,
                          civitai_token=civitai_token)


def _norm(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def _matches(host: str, entry: str) -> bool:
    """``entry`` names ``host`` or a parent domain of it; ``*`` in an entry is one whole label."""
    if "*" not in entry:
        return host == entry or host.endswith("." + entry)
    labels, pattern = host.split("."), entry.split(".")
    return len(labels) == len(pattern) and all(p in ("*", h) for h, p in zip(labels, pattern))


def host_allowed(host: str, policy: DownloadPolicy) -> bool:
    """The allow-list (with the CDN hosts of each listed host) lets downloads reach ``host``."""
    if policy.allow_hosts is None:
        return True
    host = _norm(host)
    for entry in policy.allow_hosts:
        if _matches(host, entry) or any(_matches(host, cdn) for cdn in CDN_HOSTS.get(entry, ())):
            return True
    return False


def host_named(host: str, policy: DownloadPolicy) -> bool:
    """The policy names ``host`` (a name or an IP) exactly, which lets it use a private address."""
    named = policy.allow_hosts if policy.private_hosts is None else policy.private_hosts
    return bool(named) and _norm(host) in (named or ())


def check_address(name: str, host: str, address: str, policy: DownloadPolicy) -> None:
    """DownloadRefused when ``host`` resolved to ``address`` may not be reached."""
    problem = address_problem(address)
    if problem and not (host_named(host, policy) or host_named(address, policy)):
        shown = host if host == address else f"{host} ({address})"
        raise DownloadRefused(name, f"{shown} is a {problem} address; name it in VIX_DOWNLOAD_ALLOW_HOSTS to allow it")


def check_url(name: str, url: str, policy: DownloadPolicy) -> str:
    """The URL's host, after checking the scheme, the allow-list and (for an IP literal) the address rules."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DownloadRefused(name, f"not a valid URL: {url!r} ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise DownloadRefused(name, f"only http(s) URLs are downloaded, not {parts.scheme or 'no scheme'!r}: {url}")
    host = _norm(parts.hostname or "")
    if not host or (port is not None and not 0 < port < 65536):
        raise DownloadRefused(name, f"the URL has no usable host: {url}")
    if not host_allowed(host, policy):
        raise DownloadRefused(name, f"host {host} is not in VIX_DOWNLOAD_ALLOW_HOSTS")
    if _is_ip(host):
        check_address(name, host, host, policy)
    elif _NUMERIC_HOST.match(host):
        raise DownloadRefused(name, f"host {host} is not a canonical IP address")
    return host


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def token_for(host: str, policy: DownloadPolicy) -> tuple[str, str | None] | None:
    """``(token variable, token or None)`` for a host that has a token (huggingface.co or civitai.com and their
    subdomains); None for any other host."""
    host = _norm(host)
    for token_host, env_name in TOKEN_HOSTS.items():
        if _matches(host, token_host):
            return env_name, policy.hf_token if env_name == "HF_TOKEN" else policy.civitai_token
    return None


class VettedResolver(AbstractResolver):
    """aiohttp resolver that answers only addresses the policy allows: a host resolving to any refused address is
    refused as a whole (DownloadRefused), so a connection never reaches an address that was not checked."""

    def __init__(self, policy: DownloadPolicy, name: str = "model") -> None:
        self._policy = policy
        self._name = name

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        host = _norm(host)
        fixed = self._policy.host_addresses.get(host)
        if fixed is not None:
            infos = [(socket.AF_INET6 if ":" in fixed else socket.AF_INET, fixed)]
        else:
            loop = asyncio.get_running_loop()
            answers = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
            infos = [(fam, str(sockaddr[0])) for fam, _, _, _, sockaddr in answers]
        if not infos:
            raise OSError(f"{host} has no address")
        results: list[ResolveResult] = []
        for fam, address in infos:
            check_address(self._name, host, address, self._policy)
            results.append(ResolveResult(hostname=host, host=address, port=port, family=fam, proto=0,
                                         flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV))
        return results

    async def close(self) -> None:
        return None


def open_session(policy: DownloadPolicy, *, limit: int = 16) -> aiohttp.ClientSession:
    """A client session for downloads: connects only to vetted addresses, no automatic decompression, no cookies."""
    connector = aiohttp.TCPConnector(resolver=VettedResolver(policy), limit=limit, ttl_dns_cache=10)
    timeout = aiohttp.ClientTimeout(total=None, connect=policy.timeout_s, sock_read=policy.timeout_s)
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                 cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
