"""Slow clients (``visionatrix/server/slow_clients.py``): a connection that does not finish its request line and
headers within the header timeout is closed; a body that stops arriving for the body timeout is answered 408 and
abandoned, with nothing created; a slow but steady body is served. Real sockets against a real server."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from tests.unit.server.comfy.test_comfy_prompts import solid_prompt
from visionatrix.security_config import SecuritySettings
from visionatrix.server.app import create_app
from visionatrix.server.services import Services
from visionatrix.server.slow_clients import runner_options

TIMEOUT_S = 0.5
SECURITY = SecuritySettings(header_timeout_s=TIMEOUT_S, body_timeout_s=TIMEOUT_S)


@pytest.fixture
async def slow_server(aiohttp_server: Any, services: Services) -> AsyncIterator[TestServer]:
    app = create_app(dataclasses.replace(services, security=SECURITY))
    served: TestServer = await aiohttp_server(app, **runner_options(SECURITY))
    yield served
    await served.close()


async def _connect(server: TestServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(server.host, server.port)


async def _closed_after(reader: asyncio.StreamReader, limit_s: float = 5) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), limit_s)
    return data, time.monotonic() - started


async def test_half_a_header_line_is_disconnected_after_the_header_timeout(slow_server: TestServer) -> None:
    reader, writer = await _connect(slow_server)
    writer.write(b"GET /vapi/health HTTP/1.1\r\nHo")
    await writer.drain()
    data, waited_s = await _closed_after(reader)
    writer.close()
    assert data == b""
    assert TIMEOUT_S * 0.8 <= waited_s < TIMEOUT_S + 3


async def test_headers_dribbled_byte_by_byte_do_not_extend_the_header_timeout(slow_server: TestServer) -> None:
    request = f"GET /vapi/health HTTP/1.1\r\nHost: 127.0.0.1:{slow_server.port}\r\nX-Pad: {'a' * 40}\r\n\r\n"
    reader, writer = await _connect(slow_server)

    async def dribble() -> None:  # a byte every 50 ms: the whole request would take about 3.5 s
        with contextlib.suppress(ConnectionError):
            for byte in request.encode():
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.05)

    sender = asyncio.create_task(dribble())
    data, waited_s = await _closed_after(reader)
    sender.cancel()
    writer.close()
    assert data == b"" and TIMEOUT_S * 0.8 <= waited_s < 2.5


async def test_a_prompt_client_is_served_then_closed_when_idle(slow_server: TestServer) -> None:
    reader, writer = await _connect(slow_server)
    for _ in range(2):
        writer.write(f"GET /vapi/health HTTP/1.1\r\nHost: 127.0.0.1:{slow_server.port}\r\n\r\n".encode())
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        await reader.readexactly(length)
    data, waited_s = await _closed_after(reader)  # then idle: closed after the same timeout
    writer.close()
    assert data == b"" and waited_s < TIMEOUT_S + 3


async def test_a_stalled_body_is_answered_408_and_nothing_is_queued(slow_server: TestServer) -> None:
    body = json.dumps({"prompt": solid_prompt()}).encode()
    reader, writer = await _connect(slow_server)
    writer.write(f"POST /prompt HTTP/1.1\r\nHost: 127.0.0.1:{slow_server.port}\r\nContent-Type: application/json"
                 f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:10])
    await writer.drain()
    data, waited_s = await _closed_after(reader)
    writer.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), data
    assert json.loads(payload)["error"] == "body_timeout"
    assert TIMEOUT_S * 0.8 <= waited_s < TIMEOUT_S + 3
    assert await _queue_pending(slow_server) == []


async def test_a_slow_but_steady_body_is_served(slow_server: TestServer) -> None:
    body = json.dumps({"prompt": solid_prompt()}).encode()
    reader, writer = await _connect(slow_server)
    writer.write(f"POST /prompt HTTP/1.1\r\nHost: 127.0.0.1:{slow_server.port}\r\nContent-Type: application/json"
                 f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
    started = time.monotonic()
    step = len(body) // 5 + 1
    for offset in range(0, len(body), step):  # five pieces, each within the timeout, the whole well past it
        await asyncio.sleep(TIMEOUT_S * 0.5)
        writer.write(body[offset:offset + step])
        await writer.drain()
    data, _ = await _closed_after(reader)
    writer.close()
    assert time.monotonic() - started > TIMEOUT_S * 1.5
    assert data.startswith(b"HTTP/1.1 200"), data[:200]
    assert len(await _queue_pending(slow_server)) == 1


async def _queue_pending(server: TestServer) -> list[Any]:
    reader, writer = await _connect(server)
    writer.write(f"GET /queue HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n\r\n".encode())
    data, _ = await _closed_after(reader)
    writer.close()
    return list(json.loads(data.partition(b"\r\n\r\n")[2])["queue_pending"])
