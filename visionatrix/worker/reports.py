"""The worker's reports (``GET /vapi/workers``): before the first claim, every ``seen_interval_s`` and soon after a
task starts or ends, and once on the way out. A mixin of :class:`visionatrix.worker.daemon.Worker`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any

from visionatrix.executor.devices import device_resources
from visionatrix.executor.run import Executor
from visionatrix.queue.models import WorkerRecord
from visionatrix.worker.held import HeldTask
from visionatrix.worker.source import SourceStopped, TaskSource
from visionatrix.worker.waiting import cancel_and_wait, wait_event

log = logging.getLogger("visionatrix.worker.daemon")
INSTALL_REPORT_S = 1.0
"""How often a worker reports while it downloads models (its progress reaches ``/vapi/events`` with each report)."""


class WorkerReports:
    """Needs the worker's ``options``, ``source``, ``executor``, ``current``, the report and stop events, and its
    ``_halt``, ``_until_stopping`` and ``_installed``."""

    options: Any
    source: TaskSource
    executor: Executor
    current: HeldTask | None
    allowed_flows: list[str] | None
    _report_due: asyncio.Event
    _stopping: asyncio.Event
    _fatal: SourceStopped | None

    def _halt(self, exc: SourceStopped) -> None:
        raise NotImplementedError

    async def _until_stopping(self, pending: Awaitable[Any]) -> bool:
        raise NotImplementedError

    def _installed(self) -> list[str]:
        raise NotImplementedError

    def _record(self, *, stopping: bool = False) -> WorkerRecord:
        current = None if stopping or self.current is None else self.current.task.id
        registry = getattr(self.executor, "registry", None)
        now = datetime.now(UTC)
        models = self.options.models
        return WorkerRecord(worker_id=self.options.worker_id, mode=self.source.mode, device=self.executor.device,
                            installed_flows=self._installed(), current_task_id=current, last_seen_at=now,
                            node_types=sorted(registry.object_info()) if registry is not None else None,
                            resources=device_resources(self.executor.device), stopped_at=now if stopping else None,
                            models=models.report(self.executor) if models is not None else None)

    async def _report(self, *, stopping: bool = False) -> bool:
        """Report the worker (and learn its allowed flows), then carry out the commands an admin queued for it;
        False when the report failed (logged)."""
        try:
            self.allowed_flows = await self.source.report(self._record(stopping=stopping))
            if not stopping:
                await self._run_commands()
            return True
        except SourceStopped as exc:
            self._halt(exc)
        except Exception:  # the next report retries
            log.warning("worker %s: could not record that it is alive", self.options.worker_id, exc_info=True)
        return False

    async def _run_commands(self) -> None:
        """The admin's commands (install models, free memory); one that fails is logged, never stops the worker."""
        for command in await self.source.take_commands(self.options.worker_id):
            try:
                if self.options.models is not None:
                    self.options.models.run(command, self.executor)
                elif command.get("type") == "free":
                    self.executor.free_models()
                else:
                    log.warning("worker %s has no model store: ignoring %r", self.options.worker_id, command)
            except Exception:
                log.exception("worker %s: command %r failed", self.options.worker_id, command)
            self._report_due.set()

    async def _first_report(self, burst: bool) -> bool:
        """Report before the first claim, so the claim asks only for allowed flows; retried until it works (in
        ``burst`` mode once). False when the worker must not claim."""
        while not self._stopping.is_set():
            reporting = asyncio.ensure_future(self._report())
            if not await self._until_stopping(reporting):
                await cancel_and_wait(reporting)
                return False
            if reporting.result():
                return True
            if burst:
                return False
            await wait_event(self._stopping, self.options.retry_s)
        return False

    async def _report_periodically(self) -> None:
        """A report every ``seen_interval_s``, and soon after a task starts or ends; never holds up the loop."""
        while not self._stopping.is_set():
            models = self.options.models
            busy = models is not None and models.installing()
            await wait_event(self._report_due, INSTALL_REPORT_S if busy else self.options.seen_interval_s)
            self._report_due.clear()
            await self._report()

    async def _final_report(self) -> None:
        if self._fatal is not None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.options.final_report_timeout_s):
                await self._report(stopping=True)

