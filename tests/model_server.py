"""A local HTTP server of model files for tests, with faults to order per path.

    async with ModelServer({"/m.safetensors": data}) as server:          # in the test's event loop
        url = server.url("/m.safetensors")
    with model_server_thread({"/m.bin": ServedFile(data, delay_s=0.01)}) as server:   # sync tests, subprocesses
        subprocess.run([..., server.url("/m.bin")])
    python -m tests.model_server /m.bin=path/to/file ...                 # another process; prints the base URL

It answers GET and HEAD with Content-Length, supports ``Range: bytes=N-`` / ``bytes=N-M`` (206 with Content-Range,
416 past the end), records every request as it arrives (``requests``, ``ranges(path)``) and the most connections it
served at once (``max_active``). Serve a path with ``server.serve(path, bytes | ServedFile)`` at any time; fault
counters (``drops``, ``status_times``) count down per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web


@dataclass
class ServedFile:
    """One file and the faults to serve it with."""

    data: bytes
    drop_after_bytes: int | None = None
    """Cut the connection after sending this many body bytes of a response ..."""
    drops: int = 1
    """... for this many responses (then whole)."""
    corrupt: bool = False
    """Serve the file with one byte changed (same length, wrong sha256)."""
    status: int | None = None
    """Answer this status (404, 401, 500, 429 ...) instead of the file ..."""
    status_times: int | None = None
    """... this many times, then serve the file; None: always."""
    retry_after_s: float | None = None
    """A ``Retry-After`` header sent with ``status``."""
    delay_s: float = 0.0
    """Sleep before each chunk (a slow server)."""
    chunk_bytes: int = 64 * 1024
    no_range: bool = False
    """Ignore ``Range``: always 200 with the whole file."""
    bearer_token: str | None = None
    """Demand ``Authorization: Bearer <token>``: 401 without it, 403 with another token."""
    redirect_to: str | None = None
    """Answer 302 to this URL (absolute, or a path on this server) instead of the file."""
    _corrupted: bytes | None = field(default=None, repr=False)

    def body(self) -> bytes:
        if not self.corrupt or not self.data:
            return self.data
        if self._corrupted is None:
            middle = len(self.data) // 2
            self._corrupted = self.data[:middle] + bytes([self.data[middle] ^ 0xFF]) + self.data[middle + 1:]
        return self._corrupted


@dataclass
class SeenRequest:
    """One request, recorded when it arrives; ``status`` is filled in once it is answered (0 until then)."""

    path: str
    method: str
    range: str | None
    authorization: str | None
    status: int = 0


class ModelServer:
    """The server; an async context manager (``start``/``close``) in the running loop."""

    def __init__(self, files: Mapping[str, bytes | ServedFile] | None = None, *, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.files: dict[str, ServedFile] = {}
        self.requests: list[SeenRequest] = []
        self.active = 0
        self.max_active = 0
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self.base_url = ""
        for path, file in (files or {}).items():
            self.serve(path, file)

    def serve(self, path: str, file: bytes | ServedFile) -> str:
        """Serve ``file`` at ``path`` (replacing what was there); its URL (once started)."""
        self.files["/" + path.lstrip("/")] = file if isinstance(file, ServedFile) else ServedFile(file)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def ranges(self, path: str) -> list[str | None]:
        """The Range header (or None) of every GET of ``path``, in order."""
        path = "/" + path.lstrip("/")
        return [r.range for r in self.requests if r.path == path and r.method == "GET"]

    async def start(self) -> ModelServer:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://{self._host}:{port}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ModelServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        seen = SeenRequest(request.path, request.method, request.headers.get("Range"),
                           request.headers.get("Authorization"))
        self.requests.append(seen)
        try:
            response = await self._answer(request)
            seen.status = response.status
            return response
        except Exception:
            seen.status = 500
            raise
        finally:
            self.active -= 1

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        file = self.files.get(request.path)
        if file is None:
            return web.Response(status=404, text="no such file")
        if file.bearer_token is not None:
            sent = request.headers.get("Authorization")
            if sent != f"Bearer {file.bearer_token}":
                return web.Response(status=403 if sent else 401, text="token required")
        if file.status is not None and (file.status_times is None or file.status_times > 0):
            if file.status_times is not None:
                file.status_times -= 1
            headers = {"Retry-After": f"{file.retry_after_s:g}"} if file.retry_after_s is not None else {}
            return web.Response(status=file.status, headers=headers, text=f"status {file.status}")
        if file.redirect_to is not None:
            target = file.redirect_to if "://" in file.redirect_to else self.url(file.redirect_to)
            return web.Response(status=302, headers={"Location": target})
        return await self._send(request, file)

    async def _send(self, request: web.Request, file: ServedFile) -> web.StreamResponse:
        data = file.body()
        total = len(data)
        start, end = 0, total
        response = web.StreamResponse(status=200, headers={"Accept-Ranges": "none" if file.no_range else "bytes"})
        wanted = request.headers.get("Range")
        if wanted and not file.no_range:
            span = _parse_range(wanted, total)
            if span is None:
                return web.Response(status=416, headers={"Content-Range": f"bytes */{total}"})
            start, end = span
            response.set_status(206)
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{total}"
        response.content_length = end - start
        response.content_type = "application/octet-stream"
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        drop_at = None
        if file.drop_after_bytes is not None and file.drops > 0:
            file.drops -= 1
            drop_at = file.drop_after_bytes
        with contextlib.suppress(ConnectionResetError):  # the client went away (cancelled, killed)
            await self._write_body(request, response, memoryview(data)[start:end], file, drop_at)
        return response

    @staticmethod
    async def _write_body(request: web.Request, response: web.StreamResponse, body: memoryview,
                          file: ServedFile, drop_at: int | None) -> None:
        position = 0
        while position < len(body):
            if file.delay_s:
                await asyncio.sleep(file.delay_s)
            stop = min(len(body), position + file.chunk_bytes, drop_at if drop_at is not None else len(body))
            await response.write(body[position:stop])
            position = stop
            if drop_at is not None and position >= drop_at:
                await response.drain()
                assert request.transport is not None
                request.transport.close()
                return
        await response.write_eof()


def _parse_range(header: str, total: int) -> tuple[int, int] | None:
    """``bytes=N-`` or ``bytes=N-M`` as ``(start, end)`` (end exclusive); None when past the end."""
    unit, _, spec = header.partition("=")
    first, _, last = spec.partition("-")
    if unit.strip() != "bytes" or not first.strip().isdigit():
        return None
    start = int(first)
    end = min(total, int(last) + 1) if last.strip().isdigit() else total
    return (start, end) if start < total and start < end else None


@contextlib.contextmanager
def model_server_thread(files: Mapping[str, bytes | ServedFile] | None = None, *, host: str = "127.0.0.1",
                        port: int = 0) -> Iterator[ModelServer]:
    """A started :class:`ModelServer` running in a background thread (its own event loop) until the block ends."""
    server = ModelServer(files, host=host, port=port)
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(server.close())
        loop.close()

    thread = threading.Thread(target=run, name="model-server", daemon=True)
    thread.start()
    if not started.wait(timeout=30):
        raise RuntimeError("the model server did not start")
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)


async def _serve_forever(files: dict[str, bytes], port: int) -> None:
    async with ModelServer({path: ServedFile(data, chunk_bytes=1 << 20) for path, data in files.items()},
                           port=port) as server:
        print(server.base_url, flush=True)
        await asyncio.Event().wait()


def main(argv: list[str]) -> None:
    """``python -m tests.model_server [--port N] /path=FILE ...``: serve files until killed; prints the base URL."""
    port = 0
    if argv[:1] == ["--port"]:
        port, argv = int(argv[1]), argv[2:]
    files = {path: Path(file).read_bytes() for path, _, file in (arg.partition("=") for arg in argv)}
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(files, port))


if __name__ == "__main__":
    main(sys.argv[1:])
