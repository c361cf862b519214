"""The settings that decide who may use an exposed server and how much one request may cost (``docs/security.md``).

Part of :class:`visionatrix.config.Settings` (its ``security`` field), read by ``load_security`` from the same
environment and flags; nothing is read at import time.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

AUTH_VALUES = ("on", "off")


@dataclass(frozen=True)
class SecuritySettings:
    auth: str | None = None
    """``VIX_AUTH``: ``on`` (sign-in required), ``off`` (open; warned about on a non-loopback bind) or None: on
    whenever the server binds a non-loopback address, off on loopback."""
    allowed_hosts: tuple[str, ...] = ()
    """``VIX_ALLOWED_HOSTS``: host names (besides loopback names and the bind address) the ``Host`` header may name;
    ``*``: any. A request naming another host is refused (DNS rebinding)."""
    max_pending_per_user: int = 1000
    """``VIX_MAX_PENDING_PER_USER``: pending tasks one signed-in user may have; 0: no limit."""
    max_graph_nodes: int = 5000
    """``VIX_MAX_GRAPH_NODES``: nodes one flow or prompt may have."""
    session_ttl_s: float = 14 * 24 * 3600.0
    """``VIX_SESSION_TTL_H``: how long a web UI sign-in lasts without use."""
    header_timeout_s: float = 30.0
    """``VIX_HEADER_TIMEOUT_S``: a client must send its request line and headers within this."""
    body_timeout_s: float = 300.0
    """``VIX_BODY_TIMEOUT_S``: a read of the request body that gets no byte for this long is abandoned."""
    webhook_allow_hosts: tuple[str, ...] = ()
    """``VIX_WEBHOOK_ALLOW_HOSTS``: hosts a webhook may reach although they resolve to loopback, private or
    link-local addresses (``*``: any)."""
    webhook_secret: str | None = None
    """``VIX_WEBHOOK_SECRET``: the key of the webhooks' HMAC-SHA256 signatures; None: one generated and kept in the
    database."""

    def auth_required(self, host: str) -> bool:
        """Whether sign-in is required for a server bound to ``host``."""
        if self.auth is not None:
            return self.auth == "on"
        return not is_loopback_bind(host)


def is_loopback_bind(host: str) -> bool:
    """Whether a bind address only accepts connections from this machine (``localhost``, ``127.x``, ``::1``)."""
    name = host.strip().strip("[]").lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def load_security(env: Mapping[str, str], flags: Mapping[str, Any], invalid: type[Exception]) -> SecuritySettings:
    """The security settings from ``env`` and ``flags``; a bad value raises ``invalid`` naming the variable."""
    from visionatrix import config

    defaults = SecuritySettings()
    auth = flags.get("auth") or env.get("VIX_AUTH") or None
    if auth is not None:
        auth = str(auth).strip().lower()
        auth = {"1": "on", "true": "on", "yes": "on", "0": "off", "false": "off", "no": "off"}.get(auth, auth)
        if auth not in AUTH_VALUES:
            raise invalid(f"VIX_AUTH must be 'on' or 'off', got {auth!r}")
    return SecuritySettings(
        auth=auth,
        allowed_hosts=config._hosts(env.get("VIX_ALLOWED_HOSTS")) or (),
        max_pending_per_user=config._int("VIX_MAX_PENDING_PER_USER", env.get("VIX_MAX_PENDING_PER_USER"),
                                         defaults.max_pending_per_user),
        max_graph_nodes=config._int("VIX_MAX_GRAPH_NODES", env.get("VIX_MAX_GRAPH_NODES"), defaults.max_graph_nodes,
                                    low=1),
        session_ttl_s=config._float("VIX_SESSION_TTL_H", env.get("VIX_SESSION_TTL_H"),
                                    defaults.session_ttl_s / 3600, low=0.01) * 3600,
        header_timeout_s=config._float("VIX_HEADER_TIMEOUT_S", env.get("VIX_HEADER_TIMEOUT_S"),
                                       defaults.header_timeout_s, low=0.1),
        body_timeout_s=config._float("VIX_BODY_TIMEOUT_S", env.get("VIX_BODY_TIMEOUT_S"), defaults.body_timeout_s,
                                     low=0.1),
        webhook_allow_hosts=config._hosts(env.get("VIX_WEBHOOK_ALLOW_HOSTS")) or (),
        webhook_secret=env.get("VIX_WEBHOOK_SECRET") or None,
    )
