"""``python -m visionatrix run`` applies the host allow-list and the slow-client timeouts it is configured with
(``VIX_ALLOWED_HOSTS``, ``VIX_HEADER_TIMEOUT_S``, ``VIX_BODY_TIMEOUT_S``): the composition root wires them."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from tests.e2e.service import Service, running_service

TIMEOUT_S = 0.5


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    env = {"VIX_ALLOWED_HOSTS": "vix.example.com", "VIX_HEADER_TIMEOUT_S": str(TIMEOUT_S),
           "VIX_BODY_TIMEOUT_S": str(TIMEOUT_S)}
    with running_service(tmp_path_factory.mktemp("exposed"), env) as running:
        yield running


def _exchange(service: Service, data: bytes) -> tuple[bytes, float]:
    """Send ``data``, then read until the server closes: what it sent and how long the close took."""
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(data)
        started = time.monotonic()
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received, time.monotonic() - started


def test_hosts_outside_the_allow_list_are_refused_and_listed_ones_served(service: Service) -> None:
    for host, status in (("evil.test", b"403"), ("vix.example.com", b"200"), (f"localhost:{service.port}", b"200")):
        reply, _ = _exchange(service, f"GET /vapi/health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                             .encode())
        assert reply.split(b" ", 2)[1] == status, (host, reply[:300])
        assert b"X-Frame-Options: DENY" in reply


def test_half_a_request_line_is_disconnected_after_the_header_timeout(service: Service) -> None:
    reply, waited_s = _exchange(service, b"GET /vapi/health HTTP/1.1\r\nHo")
    assert reply == b"" and TIMEOUT_S * 0.8 <= waited_s < TIMEOUT_S + 3


def test_a_stalled_body_is_answered_408(service: Service) -> None:
    reply, waited_s = _exchange(service, f"POST /prompt HTTP/1.1\r\nHost: 127.0.0.1:{service.port}\r\n"
                                         "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"pro"
                                .encode())
    assert reply.startswith(b"HTTP/1.1 408"), reply[:300]
    assert b'"body_timeout"' in reply and waited_s < TIMEOUT_S + 3
