"""Every response carries the framing, sniffing and referrer headers (``visionatrix/server/response_headers.py``):
JSON, static pages and files, errors, streamed events and WebSocket upgrades."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict, CIMultiDictProxy

from visionatrix.server.response_headers import add_security_headers

EXPECTED = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'",
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}


def _assert_secured(headers: CIMultiDictProxy[str] | CIMultiDict[str], what: str) -> None:
    for name, value in EXPECTED.items():
        assert headers.get(name) == value, (what, name, headers.get(name))


@pytest.mark.parametrize("path", ["/vapi/health", "/", "/comfy/", "/vapi/nothing-here", "/view?filename=x.png"])
async def test_json_pages_files_and_errors_carry_the_headers(http: TestClient, path: str) -> None:
    response = await http.get(path)
    await response.read()
    _assert_secured(response.headers, path)


async def test_a_static_asset_of_the_editor_carries_the_headers(http: TestClient) -> None:
    page = await (await http.get("/comfy/")).text()
    asset = page.split('src="', 1)[1].split('"', 1)[0].lstrip("./")
    response = await http.get(f"/comfy/{asset}")
    assert response.status == 200 and "javascript" in response.content_type  # nosniff needs a script type
    _assert_secured(response.headers, asset)


async def test_refused_requests_carry_the_headers(http: TestClient) -> None:
    response = await http.get("/vapi/health", headers={"Host": "evil.test"})
    assert response.status == 403
    _assert_secured(response.headers, "403")


async def test_the_event_stream_carries_the_headers(http: TestClient) -> None:
    response = await http.get("/vapi/events/stream")
    assert response.status == 200
    _assert_secured(response.headers, "sse")
    response.close()


@pytest.mark.parametrize("path", ["/ws?clientId=abc", "/vapi/events"])
async def test_websocket_upgrades_carry_the_headers(server: TestServer, path: str) -> None:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        key = base64.b64encode(b"0123456789abcdef").decode()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                     .encode())
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode()
    finally:
        writer.close()
    status, *lines = head.strip().split("\r\n")
    assert status.startswith("HTTP/1.1 101")
    _assert_secured(CIMultiDict(line.split(": ", 1) for line in lines), path)


async def test_a_pages_own_policy_gets_frame_ancestors_added_and_its_own_headers_kept(aiohttp_client: Any) -> None:
    async def with_policy(request: web.Request) -> web.Response:
        return web.Response(text="x", headers={"Content-Security-Policy": "default-src 'self';"})

    async def with_ancestors(request: web.Request) -> web.Response:
        return web.Response(text="x", headers={"Content-Security-Policy": "frame-ancestors 'self'",
                                               "Referrer-Policy": "no-referrer"})

    app = web.Application()
    app.on_response_prepare.append(add_security_headers)
    app.router.add_get("/policy", with_policy)
    app.router.add_get("/ancestors", with_ancestors)
    http = await aiohttp_client(app)
    policy = await http.get("/policy")
    assert policy.headers["Content-Security-Policy"] == "default-src 'self'; frame-ancestors 'none'"
    ancestors = await http.get("/ancestors")
    assert ancestors.headers["Content-Security-Policy"] == "frame-ancestors 'self'"
    assert ancestors.headers["Referrer-Policy"] == "no-referrer"
    assert ancestors.headers["X-Frame-Options"] == "DENY"


@pytest.mark.parametrize("path", ["/comfy/user.css", "/comfy/api/userdata/user.css", "/api/userdata/user.css"])
async def test_an_absent_user_stylesheet_is_a_404_stylesheet_not_json(http: TestClient, path: str) -> None:
    """The editor links both; under nosniff a JSON 404 is a console error, an empty stylesheet is not."""
    response = await http.get(path)
    assert response.status == 404 and response.content_type == "text/css"
    _assert_secured(response.headers, path)
