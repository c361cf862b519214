"""Allowed hosts and origins (``visionatrix/server/host_guard.py``): a request naming a host this server was not
told about is refused (DNS rebinding, ``0.0.0.0``, ``*.nip.io``), and a page may only call the server that served
it (same scheme, host and port) — on every route, both WebSockets included."""

from __future__ import annotations

import dataclasses
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.unit.server.comfy.test_comfy_prompts import solid_prompt
from visionatrix.security_config import SecuritySettings
from visionatrix.server.app import create_app
from visionatrix.server.host_guard import AllowedHosts, is_same_origin, split_host
from visionatrix.server.services import Services

FOREIGN_HOSTS = ["0.0.0.0:8288", "127.0.0.1.nip.io:8288", "evil.test:8288", "evil.test", "192.168.1.5:8288",
                 "localhost.evil.test"]


async def _client(aiohttp_client: Any, services: Services, *, allowed: tuple[str, ...] = (),
                  bind_host: str = "127.0.0.1") -> TestClient:
    security = SecuritySettings(allowed_hosts=allowed, auth="off")
    return await aiohttp_client(create_app(dataclasses.replace(services, security=security, bind_host=bind_host)))


@pytest.mark.parametrize(("value", "expected"), [
    ("localhost:8288", ("localhost", 8288)), ("LOCALHOST.", ("localhost", None)), ("[::1]:80", ("::1", 80)),
    ("Vix.Example.com", ("vix.example.com", None))])
def test_host_headers_split_into_host_and_port(value: str, expected: tuple[str, int | None]) -> None:
    assert split_host(value) == expected


@pytest.mark.parametrize("value", ["", "a b", "evil.test/x", "user@evil.test", "localhost:99999", "localhost:x"])
def test_malformed_host_headers_are_rejected(value: str) -> None:
    with pytest.raises(ValueError):
        split_host(value)


@pytest.mark.parametrize("host", ["localhost", "app.localhost", "127.0.0.1", "127.8.9.1", "::1"])
def test_loopback_hosts_are_always_allowed(host: str) -> None:
    assert AllowedHosts.build((), "0.0.0.0").allows(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1.nip.io", "evil.test", "192.168.1.5", "::", "localhost.evil"])
def test_other_hosts_are_refused_on_a_wildcard_bind(host: str) -> None:
    assert not AllowedHosts.build((), "0.0.0.0").allows(host, "127.0.0.1")
    assert not AllowedHosts.build((), "::").allows(host, "::1")


def test_a_concrete_bind_address_and_the_connections_own_address_are_allowed() -> None:
    assert AllowedHosts.build((), "192.168.1.5").allows("192.168.1.5")
    assert AllowedHosts.build((), "vix.lan").allows("vix.lan")
    wildcard = AllowedHosts.build((), "0.0.0.0")
    assert wildcard.allows("192.168.1.5", "192.168.1.5") and wildcard.allows("192.168.1.5", "::ffff:192.168.1.5")
    assert not wildcard.allows("192.168.1.6", "192.168.1.5")
    assert not wildcard.allows("0.0.0.0", "0.0.0.0")


def test_allowed_hosts_setting_names_patterns_and_any() -> None:
    allowed = AllowedHosts.build(("vix.example.com", "*.lab.test", "10.0.0.7:8288", "[fd00::1]"), "0.0.0.0")
    assert all(allowed.allows(h) for h in ("vix.example.com", "a.lab.test", "b.c.lab.test", "10.0.0.7", "fd00::1"))
    assert not any(allowed.allows(h) for h in ("lab.test", "example.com", "xvix.example.com", "10.0.0.8"))
    assert AllowedHosts.build(("*",)).allows("anything.test")
    assert "VIX_ALLOWED_HOSTS" in allowed.describe()


@pytest.mark.parametrize(("origin", "scheme", "host", "port"), [
    ("http://localhost:8288", "http", "localhost", 8288),
    ("http://LOCALHOST:8288/", "http", "localhost", 8288),
    ("http://localhost", "http", "localhost", None),
    ("http://localhost:80", "http", "localhost", None),
    ("https://vix.example.com", "https", "vix.example.com", None),
    ("https://vix.example.com", "https", "vix.example.com", 443),
    ("http://[::1]:8288", "http", "::1", 8288),
])
def test_an_origin_equal_to_the_requests_own_origin_matches(origin: str, scheme: str, host: str,
                                                           port: int | None) -> None:
    assert is_same_origin(origin, scheme, host, port)


@pytest.mark.parametrize(("origin", "scheme", "host", "port"), [
    ("http://localhost", "http", "localhost", 8288),  # no port is port 80, not 8288
    ("http://localhost:8288", "http", "localhost", None),
    ("http://localhost:9999", "http", "localhost", 8288),
    ("https://localhost:8288", "http", "localhost", 8288),
    ("http://127.0.0.1:8288", "http", "localhost", 8288),
    ("http://evil.test:8288", "http", "localhost", 8288),
    ("https://vix.example.com", "http", "vix.example.com", None),
    ("null", "http", "localhost", 8288),
    ("http://[bad", "http", "localhost", 8288),
    ("file://", "http", "localhost", 8288),
])
def test_any_other_origin_does_not_match(origin: str, scheme: str, host: str, port: int | None) -> None:
    assert not is_same_origin(origin, scheme, host, port)


@pytest.mark.parametrize("host", FOREIGN_HOSTS)
async def test_a_foreign_host_is_refused_on_every_route(aiohttp_client: Any, services: Services, host: str) -> None:
    http = await _client(aiohttp_client, services, bind_host="0.0.0.0")
    for method, path in (("GET", "/vapi/health"), ("GET", "/"), ("POST", "/api/settings"), ("OPTIONS", "/queue")):
        response = await http.request(method, path, data="{}", headers={"Host": host})
        assert response.status == 403, (method, path)
        body = await response.json()
        assert body["error"] == "host_not_allowed" and body["details"] == {"host": host,
                                                                            "setting": "VIX_ALLOWED_HOSTS"}
        assert "VIX_ALLOWED_HOSTS" in body["message"] and host.split(":")[0] in body["message"]
    assert services.user_dir is not None and not services.user_dir.exists()


async def test_a_malformed_host_is_400(aiohttp_client: Any, services: Services) -> None:
    http = await _client(aiohttp_client, services)
    response = await http.get("/vapi/health", headers={"Host": "localhost:99999"})
    assert response.status == 400 and (await response.json())["error"] == "invalid_host"


async def test_loopback_and_configured_hosts_are_served(aiohttp_client: Any, services: Services) -> None:
    http = await _client(aiohttp_client, services, allowed=("vix.example.com", "*.lab.test"), bind_host="0.0.0.0")
    for host in ("localhost:8288", "127.0.0.1:8288", "[::1]:8288", "app.localhost", "vix.example.com",
                 "gpu.lab.test:8288"):
        assert (await http.get("/vapi/health", headers={"Host": host})).status == 200, host
    assert (await http.get("/vapi/health")).status == 200  # the test client's own Host: 127.0.0.1:<port>


async def test_a_star_allows_any_host_but_still_checks_the_origin(aiohttp_client: Any, services: Services) -> None:
    http = await _client(aiohttp_client, services, allowed=("*",), bind_host="0.0.0.0")
    assert (await http.get("/vapi/health", headers={"Host": "anything.test:8288"})).status == 200
    refused = await http.post("/api/settings", data="{}", headers={"Host": "anything.test:8288",
                                                                    "Origin": "http://evil.test"})
    assert refused.status == 403 and (await refused.json())["error"] == "cross_origin_refused"


async def test_the_origin_must_match_scheme_host_and_port_exactly(aiohttp_client: Any, services: Services) -> None:
    http = await _client(aiohttp_client, services)
    same = {"Host": "localhost:8288", "Origin": "http://localhost:8288"}
    assert (await http.post("/api/settings", data="{}", headers=same)).status == 200
    for origin in ("http://localhost", "http://localhost:9999", "https://localhost:8288", "http://127.0.0.1:8288",
                   "http://evil.test:8288", "null"):
        response = await http.post("/api/settings", data='{"Comfy.Evil": 1}',
                                   headers={"Host": "localhost:8288", "Origin": origin})
        assert response.status == 403, origin
        body = await response.json()
        assert body["error"] == "cross_origin_refused" and body["details"] == {"origin": origin,
                                                                                "host": "localhost:8288"}
    assert not (services.user_dir / "default" / "comfy.settings.json").exists() or \
        "Comfy.Evil" not in (services.user_dir / "default" / "comfy.settings.json").read_text()
    # GET with a foreign Origin is refused too (a CORS read of the queue)
    assert (await http.get("/queue", headers={"Host": "localhost:8288", "Origin": "http://evil.test"})).status == 403
    # OPTIONS is not refused by the Origin check (a preflight gets no CORS grant anyway)
    response = await http.options("/api/users", headers={"Host": "localhost:8288", "Origin": "http://evil.test"})
    assert response.status != 403


async def test_a_tls_proxys_forwarded_scheme_decides_the_default_port(aiohttp_client: Any,
                                                                     services: Services) -> None:
    http = await _client(aiohttp_client, services, allowed=("vix.example.com",), bind_host="0.0.0.0")
    page = {"Host": "vix.example.com", "Origin": "https://vix.example.com"}
    assert (await http.post("/api/settings", data="{}", headers=page)).status == 403  # plain http: port 80 ≠ 443
    proxied = {**page, "X-Forwarded-Proto": "https"}
    assert (await http.post("/api/settings", data="{}", headers=proxied)).status == 200
    forwarded = {**page, "Forwarded": "for=10.0.0.1;proto=https"}
    assert (await http.post("/api/settings", data="{}", headers=forwarded)).status == 200


async def test_a_cross_site_queue_clear_is_refused_and_the_queue_is_untouched(aiohttp_client: Any,
                                                                             services: Services) -> None:
    http = await _client(aiohttp_client, services)
    queued = await http.post("/prompt", json={"prompt": solid_prompt()})
    assert queued.status == 200
    for headers in ({"Origin": "http://evil.test"}, {"Host": "evil.test:8288", "Origin": "http://evil.test:8288"},
                    {"Host": "0.0.0.0:8288", "Origin": "http://evil.test"}):
        refused = await http.post("/queue", json={"clear": True}, headers=headers)
        assert refused.status == 403, headers
        created = await http.post("/prompt", json={"prompt": solid_prompt()}, headers=headers)
        assert created.status == 403, headers
    pending = (await (await http.get("/queue")).json())["queue_pending"]
    assert len(pending) == 1


@pytest.mark.parametrize("path", ["/ws?clientId=abc", "/vapi/events"])
async def test_both_websockets_refuse_foreign_pages_and_hosts(aiohttp_client: Any, services: Services,
                                                              path: str) -> None:
    http = await _client(aiohttp_client, services)
    own = f"http://127.0.0.1:{http.port}"
    for headers in ({"Origin": "http://evil.test"}, {"Origin": f"http://localhost:{http.port}"},
                    {"Host": "evil.test", "Origin": "http://evil.test"}, {"Host": "0.0.0.0:8288"}):
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            async with http.ws_connect(path, headers=headers):
                pass
        assert caught.value.status == 403, headers
    async with http.ws_connect(path, headers={"Origin": own}) as ws:
        assert await ws.receive(timeout=5) is not None
