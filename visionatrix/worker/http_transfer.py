"""``HttpTransport``: the HTTP side of ``HttpSource`` — requests with the worker's credentials, retries with
backoff, and streamed file transfers checked by SHA-256.

What a failure means:

- a connection error, a timeout, a 5xx (or 408/429), a truncated or corrupted transfer: transient — retried after
  0.5 s, doubling up to ``retry_max_s``, until the caller's deadline (a task's lease; none: forever);
- 401: ``Unauthorized`` — the worker stops (retrying with the same credentials cannot help);
- 409 on a task's call: ``errors.LeaseLost``;
- any other 4xx: ``ServerRejected`` with the server's message — the call fails, nothing is retried.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from visionatrix.errors import LeaseLost, VisionatrixError
from visionatrix.storage import streams
from visionatrix.storage.info import file_info
from visionatrix.worker.source import SourceStopped

log = logging.getLogger(__name__)

LEASE_HEADER = "X-Vix-Lease"
SHA256_HEADER = "X-Vix-SHA256"
CHUNK_BYTES = 256 * 1024
FIRST_RETRY_S = 0.5
TRANSIENT_STATUSES = frozenset({408, 429})

Deadline = Callable[[], float | None]
"""The monotonic time after which a call is no longer retried (read again before each retry); None: never."""


class Unauthorized(SourceStopped):
    """The server refused this worker's credentials (WORKER_AUTH): set the same value on the server and the
    worker."""


class ServerRejected(VisionatrixError):
    """The server refused a request of this worker."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        super().__init__(f"the server answered {status} {code}: {message}")


class _Transient(Exception):
    """A failure worth retrying (5xx, a corrupted transfer)."""


def authorization(auth: str | None) -> str | None:
    """The ``Authorization`` value for ``WORKER_AUTH``: ``user:password`` → Basic, anything else → Bearer."""
    if not auth:
        return None
    if ":" in auth:
        return "Basic " + base64.b64encode(auth.encode()).decode("ascii")
    return f"Bearer {auth}"


class HttpTransport:
    """Requests to the server at ``base_url``; ``timeout_s`` bounds a JSON call and each read of a transfer."""

    def __init__(self, base_url: str, *, auth: str | None, retry_max_s: float, timeout_s: float = 60.0) -> None:
        if retry_max_s < FIRST_RETRY_S:
            raise ValueError(f"retry_max_s must be at least {FIRST_RETRY_S}")
        self.base_url = base_url.rstrip("/")
        self.retry_max_s = retry_max_s
        self.timeout_s = timeout_s
        self.headers: dict[str, str] = {}
        value = authorization(auth)
        if value is not None:
            self.headers["Authorization"] = value
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self.headers)  # made on first use, inside the loop
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    # -- retries -----------------------------------------------------------------------------------------------

    async def retrying(self, what: str, attempt: Callable[[], Any], *, deadline: Deadline | None = None,
                       task_id: int | None = None) -> Any:
        """Run ``attempt()`` (a coroutine factory) until it succeeds, retrying transient failures with backoff.

        Past ``deadline`` a task's call raises ``LeaseLost(task_id)`` (its lease has run out by now).
        """
        delay_s = FIRST_RETRY_S
        while True:
            try:
                return await attempt()
            except (aiohttp.ClientError, TimeoutError, _Transient) as exc:
                until = deadline() if deadline is not None else None
                if until is not None and time.monotonic() + delay_s > until:
                    log.warning("%s: giving up (%s): the lease has run out by now", what, _describe(exc))
                    raise LeaseLost(task_id if task_id is not None else -1) from exc
                log.warning("%s failed (%s); retrying in %.1f s", what, _describe(exc), delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(self.retry_max_s, delay_s * 2)

    async def check(self, response: aiohttp.ClientResponse, task_id: int | None) -> None:
        """Raise for a response that is not a success (see the module's docstring)."""
        if response.status < 400:
            return
        if response.status >= 500 or response.status in TRANSIENT_STATUSES:
            raise _Transient(f"HTTP {response.status}")
        code, message = await _error_of(response)
        if response.status == 401:
            raise Unauthorized(f"the server at {self.base_url} refused the worker credentials ({message}); set "
                               f"WORKER_AUTH to the server's value")
        if response.status == 409 and task_id is not None:
            raise LeaseLost(task_id)
        raise ServerRejected(response.status, code, message)

    # -- calls -------------------------------------------------------------------------------------------------

    async def call(self, method: str, path: str, body: Any, *, what: str, deadline: Deadline | None = None,
                   task_id: int | None = None, timeout_s: float | None = None) -> Any:
        """A JSON request and its JSON answer, retried (see :meth:`retrying`)."""
        timeout = aiohttp.ClientTimeout(total=timeout_s or self.timeout_s)

        async def attempt() -> Any:
            async with self.session.request(method, self.url(path), json=body, timeout=timeout) as response:
                await self.check(response, task_id)
                return await response.json()

        return await self.retrying(what, attempt, deadline=deadline, task_id=task_id)

    def _transfer_timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=None, sock_connect=self.timeout_s, sock_read=self.timeout_s)

    async def download(self, path: str, dest: Path, *, lease_token: str, sha256: str | None, what: str,
                       deadline: Deadline, task_id: int) -> None:
        """Stream the file at ``path`` to ``dest`` (it appears only once complete and checked against the
        server's ``X-Vix-SHA256`` and ``sha256``)."""

        async def attempt() -> None:
            async with self.session.get(self.url(path), headers={LEASE_HEADER: lease_token},
                                        timeout=self._transfer_timeout()) as response:
                await self.check(response, task_id)
                expected = {d.lower() for d in (response.headers.get(SHA256_HEADER), sha256) if d}
                info = await streams.write_stream(dest, _chunks(response), max_bytes=sys.maxsize)
                if expected - {info.sha256}:
                    dest.unlink(missing_ok=True)
                    raise _Transient(f"the SHA-256 of the received file is {info.sha256}, not "
                                     f"{', '.join(sorted(expected))}")

        await self.retrying(what, attempt, deadline=deadline, task_id=task_id)

    async def upload(self, path: str, source: Path, *, lease_token: str, what: str, deadline: Deadline,
                     task_id: int) -> Any:
        """``PUT`` the file ``source`` to ``path``, streamed, with its SHA-256; a dropped upload is sent again (the
        server replaces the file, so a retry never makes a second one). The server's answer."""
        sha256 = (await asyncio.to_thread(file_info, source)).sha256
        headers = {LEASE_HEADER: lease_token, SHA256_HEADER: sha256, "Content-Type": "application/octet-stream"}

        async def attempt() -> Any:
            with source.open("rb") as body:
                async with self.session.put(self.url(path), data=body, headers=headers,
                                            timeout=self._transfer_timeout()) as response:
                    await self.check(response, task_id)
                    return await response.json()

        return await self.retrying(what, attempt, deadline=deadline, task_id=task_id)


async def _chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        yield chunk


async def _error_of(response: aiohttp.ClientResponse) -> tuple[str, str]:
    """``(error code, message)`` of an error answer (the usual ``{"error", "message"}`` body, or its text)."""
    text = await response.text()
    try:
        body = await response.json(content_type=None)
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return str(body["error"]), str(body.get("message", ""))
    return f"http_{response.status}", text.strip()[:500] or (response.reason or "")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
