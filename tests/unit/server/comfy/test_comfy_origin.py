"""The localhost guard (``visionatrix/server/comfy/origin.py``): a page from another site may not call a server on
a loopback address; same-site pages, non-browser clients, ``OPTIONS`` and non-loopback hosts pass."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from visionatrix.server.app import create_app
from visionatrix.server.comfy.origin import is_cross_site, is_loopback, origin_guard
from visionatrix.server.services import Services


@pytest.fixture
async def guarded(aiohttp_client: Any, services: Services) -> TestClient:
    app = create_app(services)
    app.middlewares.append(origin_guard)
    return await aiohttp_client(app)


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "app.localhost", "127.0.0.1", "127.8.9.1", "::1"])
def test_loopback_names_and_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["example.com", "192.168.1.5", "10.0.0.1", "::", "localhost.example.com", ""])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize(("host", "origin"), [
    ("localhost:8188", "http://localhost:8188"),
    ("127.0.0.1:8188", "http://127.0.0.1:8188"),
    ("[::1]:8188", "http://[::1]:8188"),
    ("localhost:8188", "https://LOCALHOST:8188"),
    ("localhost:8188", "http://localhost"),
    ("localhost", "http://localhost:3000"),
    ("example.com", "http://evil.test"),
    ("192.168.1.5:8188", "http://evil.test"),
])
def test_same_site_or_exposed_servers_pass(host: str, origin: str) -> None:
    assert not is_cross_site(host, origin)


@pytest.mark.parametrize(("host", "origin"), [
    ("localhost:8188", "http://evil.test"),
    ("127.0.0.1:8188", "http://localhost:8188"),
    ("localhost:8188", "http://localhost:9999"),
    ("[::1]:8188", "http://127.0.0.1:8188"),
    ("localhost:8188", "null"),
    ("localhost:8188", "http://[bad"),
    ("localhost:8188", "http://localhost:99999"),
])
def test_cross_site_requests_to_loopback_are_caught(host: str, origin: str) -> None:
    assert is_cross_site(host, origin)


async def test_a_cross_site_request_to_a_loopback_server_is_403_before_any_handler(
        guarded: TestClient, services: Services) -> None:
    headers = {"Host": "127.0.0.1:8188", "Origin": "http://evil.test"}
    response = await guarded.post("/api/settings", data='{"Comfy.Evil": 1}', headers=headers)
    assert response.status == 403
    body = await response.json()
    assert body["error"] == "cross_origin_refused" and body["details"] == {"origin": "http://evil.test",
                                                                            "host": "127.0.0.1:8188"}
    assert services.user_dir is not None and not services.user_dir.exists()
    assert (await guarded.get("/vapi/health", headers=headers)).status == 403


async def test_same_site_requests_and_clients_without_origin_pass(guarded: TestClient) -> None:
    same = {"Host": "localhost:8188", "Origin": "http://localhost:8188"}
    assert (await guarded.post("/api/settings", data="{}", headers=same)).status == 200
    assert (await guarded.get("/api/users", headers={"Host": "localhost:8188"})).status == 200
    exposed = {"Host": "vix.example.com", "Origin": "http://other.example.com"}
    assert (await guarded.get("/api/users", headers=exposed)).status == 200


async def test_options_is_not_refused_by_the_guard(guarded: TestClient) -> None:
    response = await guarded.options("/api/users", headers={"Host": "localhost:8188", "Origin": "http://evil.test"})
    assert response.status != 403
