"""``ModelInstaller``: catalog models downloaded as jobs, a few at a time, each cancellable, with progress.

``start(names)`` adds the entries they require (catalog ``requires``), checks every name first (``NotFound``: nothing
starts), skips installed models and queues the rest; at most ``max_concurrent`` download at once (the others report
``queued``). A job ends ``installed``, ``failed`` (with the error text) or ``cancelled`` (its ``.part`` stays for the
next install to resume). The installer owns one aiohttp session from :func:`hosts.open_session`, created in the
running loop on first use.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import aiohttp

from visionatrix.errors import ModelError, VisionatrixError
from visionatrix.models import download, hosts, part_file
from visionatrix.models.catalog import CatalogModel, ModelsCatalog
from visionatrix.models.download import DownloadProgress, DownloadState
from visionatrix.models.folders import ModelFolders
from visionatrix.models.hosts import DownloadPolicy

log = logging.getLogger(__name__)

KEEP_ENDED = 256
"""Ended jobs whose last progress ``progress()`` still shows."""
_ENDED = (DownloadState.INSTALLED, DownloadState.FAILED, DownloadState.CANCELLED)


class ModelInstaller:
    """Downloads catalog models into ``folders`` under ``policy``."""

    def __init__(self, folders: ModelFolders, catalog: ModelsCatalog, policy: DownloadPolicy, *,
                 max_concurrent: int, on_progress: Callable[[DownloadProgress], None] | None = None) -> None:
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be at least 1, got {max_concurrent}")
        self.folders, self.catalog, self.policy = folders, catalog, policy
        self.max_concurrent = max_concurrent
        self._on_progress = on_progress
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._progress: dict[str, DownloadProgress] = {}
        self._slots: asyncio.Semaphore | None = None
        self._session: aiohttp.ClientSession | None = None

    def start(self, names: Sequence[str]) -> list[str]:
        """Queue downloads of ``names`` and of the entries they require (catalog ``requires``); the names started
        or already running (installed ones are skipped). ``NotFound`` for a name not in the catalog and
        ``ModelError`` for one without a URL, before any starts."""
        models = [self.catalog.get(name) for name in self.catalog.with_required(names)]
        for model in models:
            if not model.url:
                raise ModelError(f"model {model.name} has no download URL in the catalog")
        targets = {model.name: self.folders.install_path(model.folder, model.filename) for model in models}
        started: list[str] = []
        for model in models:
            if self.is_busy(model.name):
                started.append(model.name)
            elif not self._installed(model):
                self._set(DownloadProgress(model.name, DownloadState.QUEUED, 0, model.file_size, 0.0, None))
                task = asyncio.get_running_loop().create_task(self._run(model, targets[model.name]),
                                                              name=f"download {model.name}")
                task.add_done_callback(functools.partial(self._job_done, model.name))
                self._jobs[model.name] = task
                started.append(model.name)
        return started

    async def wait(self, names: Sequence[str] | None = None) -> dict[str, DownloadProgress]:
        """Wait for the jobs of ``names`` (default: all running) to end; their last progress."""
        wanted = list(self._jobs) if names is None else list(names)
        tasks = [self._jobs[name] for name in wanted if name in self._jobs]
        if tasks:
            await asyncio.wait(tasks)
        return {name: self._progress[name] for name in wanted if name in self._progress}

    def cancel(self, name: str) -> bool:
        """Cancel the queued or running download of ``name``; False when none runs. Its ``.part`` stays."""
        task = self._jobs.get(name)
        if task is None or task.done():
            return False
        task.cancel()
        return True

    def progress(self) -> dict[str, DownloadProgress]:
        """The progress of running jobs and of the last :data:`KEEP_ENDED` ended ones."""
        return dict(self._progress)

    def is_busy(self, name: str) -> bool:
        task = self._jobs.get(name)
        return task is not None and not task.done()

    async def aclose(self) -> None:
        """Cancel every job (their ``.part`` files stay for a resume) and close the session."""
        tasks = [task for task in self._jobs.values() if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _installed(self, model: CatalogModel) -> bool:
        for folder in model.folders:
            found = self.folders.find(folder, model.filename)
            if found is not None and part_file.is_installed(found, model.file_size):
                return True
        return False

    async def _run(self, model: CatalogModel, target: Path) -> None:
        try:
            if self._slots is None:
                self._slots = asyncio.Semaphore(self.max_concurrent)
            async with self._slots:
                if self._session is None or self._session.closed:
                    self._session = hosts.open_session(self.policy, limit=max(16, self.max_concurrent))
                await download.download_model(self._session, model, target, self.policy, on_progress=self._set)
        except VisionatrixError as exc:
            self._end(model.name, DownloadState.FAILED, exc.message)
        except OSError as exc:
            self._end(model.name, DownloadState.FAILED, f"{type(exc).__name__}: {exc}")
        except Exception as exc:  # a job's boundary: one broken download never takes the installer down
            log.exception("download of %s failed", model.name)
            self._end(model.name, DownloadState.FAILED, f"{type(exc).__name__}: {exc}")

    def _job_done(self, name: str, task: asyncio.Task[None]) -> None:
        """Runs when a job's task ends, also when it was cancelled before it ever ran."""
        if self._jobs.get(name) is task:
            del self._jobs[name]
        if task.cancelled():
            self._end(name, DownloadState.CANCELLED, None)

    def _end(self, name: str, state: DownloadState, error: str | None) -> None:
        last = self._progress.get(name) or DownloadProgress(name, state)
        self._set(DownloadProgress(name, state, last.bytes_done, last.bytes_total, 0.0, None, error))
        ended = [n for n, p in self._progress.items() if p.state in _ENDED and n not in self._jobs]
        for old in ended[:max(0, len(ended) - KEEP_ENDED)]:
            del self._progress[old]

    def _set(self, progress: DownloadProgress) -> None:
        self._progress.pop(progress.name, None)  # re-inserted last: the dict keeps end order for trimming
        self._progress[progress.name] = progress
        if self._on_progress is not None:
            try:
                self._on_progress(progress)
            except Exception:
                log.exception("the progress callback failed on %s", progress.name)
