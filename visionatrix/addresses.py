"""Which IP addresses an outgoing connection of the server (a model download, a webhook) must not reach unless an
operator allows it: the one classification both use."""

from __future__ import annotations

import ipaddress

KINDS = ("unspecified", "loopback", "link_local", "multicast", "reserved", "private")


def address_problem(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why ``address`` is not a public unicast address (``"loopback"``, ``"private"``, ``"link-local"``, ...,
    ``"non-public"``), or None for a public one. An IPv6 address that carries an IPv4 one (IPv4-mapped, 6to4,
    Teredo) is judged by that IPv4 address too."""
    ip = address if not isinstance(address, str) else ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    judged: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # reached as the IPv4 address it maps
            judged = [ip.ipv4_mapped]
        if ip.sixtofour is not None:
            judged.append(ip.sixtofour)
        if ip.teredo is not None:
            judged.append(ip.teredo[1])
    for one in judged:
        for kind in KINDS:
            if getattr(one, f"is_{kind}"):
                return kind.replace("_", "-")
        if not one.is_global:
            return "non-public"
    return None
