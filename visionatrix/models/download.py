"""One model download that never leaves a broken model under its final name.

Bytes go to ``<target>.part`` (hashed as they are written); a later call resumes it with ``Range: bytes=<size>-``
after hashing what is there. Only a file whose sha256 (and size) match the catalog is renamed to ``target``
(``os.replace`` after fsync); a mismatch deletes the part. The part, its lock and its writer thread are
:mod:`visionatrix.models.part_file`. Redirects are followed here, each hop checked by :mod:`visionatrix.models.hosts`;
tokens go only to their own host, never across a redirect.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import shutil
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, NoReturn, Protocol
from urllib.parse import urljoin, urlsplit

import aiohttp

from visionatrix.errors import DownloadAuthRequired, DownloadError, DownloadRefused
from visionatrix.models import hosts
from visionatrix.models.hosts import DownloadPolicy
from visionatrix.models.part_file import PartWriter, commit, hash_file, is_installed, part_lock, part_path

MAX_REDIRECTS = 10
DISK_MARGIN_BYTES = 64 << 20
"""Free space a download leaves on the disk beyond the bytes it still needs."""
PROGRESS_INTERVAL_S = 0.1
SPEED_WINDOW_S = 3.0
MAX_BACKOFF_S = 30.0
_REDIRECTS = (301, 302, 303, 307, 308)
_TRANSIENT = (408, 425, 429, 500, 502, 503, 504)


class ModelSource(Protocol):
    """What a download needs of a catalog model (``catalog.CatalogModel`` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def file_size(self) -> int | None: ...


class DownloadState(StrEnum):
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    INSTALLED = "installed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class DownloadProgress:
    """Where one model's download stands."""

    name: str
    state: str
    bytes_done: int = 0
    bytes_total: int | None = None
    speed_bps: float = 0.0
    eta_s: float | None = None
    error: str | None = None

    def event(self, worker_id: str | None = None) -> dict[str, Any]:
        """The ``model_progress`` event of ``/vapi/events``."""
        return {"type": "model_progress", **asdict(self), "worker_id": worker_id}


ProgressCallback = Callable[[DownloadProgress], None]


async def download_model(session: aiohttp.ClientSession, model: ModelSource, target: Path, policy: DownloadPolicy,
                         *, on_progress: ProgressCallback | None = None) -> None:
    """Download ``model`` to ``target``: resume ``<target>.part``, verify, rename. A final file of the right size is
    left alone. Use a session from :func:`hosts.open_session` (it connects only to vetted addresses)."""
    progress = _Meter(model.name, model.file_size, on_progress)
    if is_installed(target, model.file_size):
        progress.report(DownloadState.INSTALLED, bytes_done=model.file_size or target.stat().st_size, force=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    with part_lock(model.name, target):
        await _Transfer(session, model, target, policy, progress).run()


class _Transient(Exception):
    """A failure worth another attempt (connection, timeout, 5xx, 429)."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class _Transfer:
    """The attempts of one download; ``done`` bytes of the part are hashed into ``hasher``."""

    def __init__(self, session: aiohttp.ClientSession, model: ModelSource, target: Path, policy: DownloadPolicy,
                 progress: _Meter) -> None:
        self.session, self.model, self.target, self.policy, self.progress = session, model, target, policy, progress
        self.name = model.name
        self.part = part_path(target)
        self.hasher = hashlib.sha256()
        self.done = 0
        self.total = model.file_size

    async def run(self) -> None:
        await self._hash_part()
        if self.total is not None and self.done > self.total:
            self._restart()
        if self.total is None or self.done < self.total:
            self._check_disk(self.total)
            await self._attempts()
        self.progress.report(DownloadState.VERIFYING, self.done, self.total, force=True)
        await self._finish()
        self.progress.report(DownloadState.INSTALLED, self.done, self.total, force=True)

    async def _attempts(self) -> None:
        failures = 0
        while True:
            before = self.done
            try:
                if await self._attempt():
                    return
                continue
            except (TimeoutError, aiohttp.ClientError) as exc:
                problem = _Transient(f"{type(exc).__name__}: {exc}".rstrip(": "))
            except _Transient as exc:
                problem = exc
            failures = 1 if self.done > before else failures + 1
            if failures > self.policy.retries:
                raise DownloadError(self.name, f"{problem.reason} (gave up after {failures} failed attempts)")
            delay_s = min(MAX_BACKOFF_S, self.policy.backoff_s * 2 ** (failures - 1))
            if problem.retry_after_s is not None:
                delay_s = max(delay_s, min(problem.retry_after_s, self.policy.retry_after_max_s))
            await asyncio.sleep(delay_s)

    async def _attempt(self) -> bool:
        """One request; True when the part holds the whole file (False: start over at once)."""
        response = await self._open()
        async with response:
            if response.status == 416:
                return self._on_unsatisfiable(response)
            if response.status == 200:
                self._restart()
            elif _content_range_start(response) != self.done:  # a range we did not ask for
                if not self.done:
                    raise DownloadError(self.name, "the server answered 206 with a range that was not asked for")
                self._restart()
                return False  # ask again without a Range
            total = _response_total(response, self.done)
            if total is not None and self.total is not None and total != self.total:
                raise DownloadError(self.name, f"the server has {total} bytes, the catalog says {self.total}")
            self.total = self.total if self.total is not None else total
            self._check_disk(self.total)
            await self._stream(response)
        if self.total is not None and self.done < self.total:
            raise _Transient(f"the connection ended at byte {self.done} of {self.total}")
        return True

    async def _open(self) -> aiohttp.ClientResponse:
        """The response to a GET of the model's URL, redirects followed and checked hop by hop."""
        url, origin, send_token = self.model.url, "", True
        for _hop in range(MAX_REDIRECTS + 1):
            host = hosts.check_url(self.name, url, self.policy)
            origin = origin or host
            send_token = send_token and host == origin
            headers = {"Accept-Encoding": "identity"}
            if self.done:
                headers["Range"] = f"bytes={self.done}-"
            token = hosts.token_for(host, self.policy) if send_token else None
            if token and token[1]:
                headers["Authorization"] = f"Bearer {token[1]}"
            try:
                response = await self.session.get(url, headers=headers, allow_redirects=False)
            except DownloadRefused as exc:
                raise DownloadRefused(self.name, exc.reason) from None
            if response.status in (200, 206, 416):
                return response
            response.release()
            location = response.headers.get("Location")
            if response.status not in _REDIRECTS or not location:
                self._raise_for(response, origin, url)
            url = urljoin(url, location)
        raise DownloadError(self.name, f"more than {MAX_REDIRECTS} redirects")

    def _raise_for(self, response: aiohttp.ClientResponse, origin: str, url: str) -> NoReturn:
        status, shown = response.status, _without_query(url)
        if status in (401, 403):
            token = hosts.token_for(origin, self.policy)
            if token is None:
                raise DownloadError(self.name, f"HTTP {status}: {shown} refused access (no token is sent to "
                                               f"{origin}; only huggingface.co and civitai.com get tokens)")
            raise DownloadAuthRequired(self.name, token[0], status, token_sent=bool(token[1]))
        if status in _TRANSIENT:
            raise _Transient(f"HTTP {status} from {shown}", _retry_after_s(response.headers.get("Retry-After")))
        if status in _REDIRECTS:
            raise DownloadError(self.name, f"HTTP {status} from {shown} without a usable Location")
        raise DownloadError(self.name, f"HTTP {status} from {shown}")

    def _on_unsatisfiable(self, response: aiohttp.ClientResponse) -> bool:
        """416 to ``Range: bytes=<done>-``: the part is the whole file (verify it), or more (start over)."""
        total = _content_range_total(response.headers.get("Content-Range"))
        total = total if total is not None else self.total
        if total is not None and total == self.done:
            self.total = total
            return True
        if not self.done:
            raise DownloadError(self.name, "the server answered 416 to a request without a Range")
        self._restart()
        return False

    async def _stream(self, response: aiohttp.ClientResponse) -> None:
        self.progress.report(DownloadState.DOWNLOADING, self.done, self.total, force=True)
        async with PartWriter(self.part, self.hasher, batch_bytes=self.policy.chunk_bytes) as writer:
            async for chunk in response.content.iter_chunked(self.policy.chunk_bytes):
                if self.total is not None and self.done + len(chunk) > self.total:
                    raise DownloadError(self.name, f"the server sent more than the {self.total} bytes it announced")
                await writer.write(chunk)
                self.done += len(chunk)
                self.progress.report(DownloadState.DOWNLOADING, self.done, self.total)

    def _restart(self) -> None:
        """Drop the part's bytes: the next bytes are the file's first."""
        self.part.write_bytes(b"")
        self.hasher = hashlib.sha256()
        self.done = 0

    async def _hash_part(self) -> None:
        if not self.part.exists():
            return
        self.progress.report(DownloadState.DOWNLOADING, 0, self.total, force=True)
        self.hasher, self.done = await asyncio.to_thread(hash_file, self.part, self.policy.chunk_bytes)

    def _check_disk(self, total: int | None) -> None:
        if total is None:
            return
        need = total - self.done + DISK_MARGIN_BYTES
        free = shutil.disk_usage(self.target.parent).free
        if free < need:
            raise DownloadError(self.name, f"not enough free disk space in {self.target.parent}: need {_size(need)} "
                                           f"(with a {_size(DISK_MARGIN_BYTES)} margin), have {_size(free)}")

    async def _finish(self) -> None:
        digest = self.hasher.hexdigest()
        expected = (self.model.sha256 or "").lower() or None
        if expected is not None and digest != expected:
            self.part.unlink(missing_ok=True)
            raise DownloadError(self.name, f"sha256 mismatch: expected {expected} got {digest}; the downloaded "
                                           "bytes were deleted")
        if self.model.file_size is not None and self.done != self.model.file_size:
            self.part.unlink(missing_ok=True)
            raise DownloadError(self.name, f"size mismatch: expected {self.model.file_size} bytes got {self.done}")
        await asyncio.to_thread(commit, self.part, self.target)


def _content_range_start(response: aiohttp.ClientResponse) -> int | None:
    """The first byte of ``Content-Range: bytes START-END/TOTAL``; None when missing or malformed."""
    unit, _, spec = (response.headers.get("Content-Range") or "").partition(" ")
    first = spec.partition("-")[0]
    return int(first) if unit == "bytes" and first.isdigit() else None


def _content_range_total(header: str | None) -> int | None:
    total = (header or "").rpartition("/")[2]
    return int(total) if total.isdigit() else None


def _response_total(response: aiohttp.ClientResponse, offset: int) -> int | None:
    if response.status == 206:
        return _content_range_total(response.headers.get("Content-Range"))
    return None if response.content_length is None else offset + response.content_length


def _retry_after_s(header: str | None) -> float | None:
    if not header:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(header))
    with contextlib.suppress(TypeError, ValueError):
        return max(0.0, email.utils.parsedate_to_datetime(header).timestamp() - time.time())
    return None


def _without_query(url: str) -> str:
    """The URL without query and fragment (signed CDN URLs carry credentials there)."""
    parts = urlsplit(url)
    return parts._replace(query="", fragment="").geturl()


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1024**3:.2f} GiB" if n_bytes >= 1024**3 else f"{n_bytes / 1024**2:.1f} MiB"


class _Meter:
    """Progress reports, at most one per ``PROGRESS_INTERVAL_S`` unless forced; speed over ``SPEED_WINDOW_S``."""

    def __init__(self, name: str, total: int | None, callback: ProgressCallback | None) -> None:
        self.name, self.total, self.callback = name, total, callback
        self.samples: deque[tuple[float, int]] = deque()
        self.last_report_s = 0.0

    def report(self, state: str, bytes_done: int, bytes_total: int | None = None, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.callback is None or (not force and now - self.last_report_s < PROGRESS_INTERVAL_S):
            return
        self.last_report_s = now
        if self.samples and bytes_done < self.samples[-1][1]:
            self.samples.clear()  # started over
        self.samples.append((now, bytes_done))
        while len(self.samples) > 2 and now - self.samples[1][0] > SPEED_WINDOW_S:
            self.samples.popleft()
        total = bytes_total if bytes_total is not None else self.total
        (start_s, start_bytes) = self.samples[0]
        speed = (bytes_done - start_bytes) / (now - start_s) if now > start_s else 0.0
        eta = (total - bytes_done) / speed if total is not None and speed > 0 else None
        self.callback(DownloadProgress(self.name, state, bytes_done, total, speed, eta))
