"""The worker loop: claim a task, run its graph, keep the lease alive, report throttled progress, store results.

Two catch-all boundaries only (STYLE.md): per node, inside the executor (a node's exception becomes the task's error
with node id and class), and per loop iteration here (logged; the daemon never dies on one bad task). Cancellation
is not an error. On shutdown the running task is interrupted and released back to ``pending`` — never left
``running``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from visionatrix.errors import Interrupted, InvalidGraph, LeaseLost, NodeFailed
from visionatrix.executor import events
from visionatrix.executor.run import Executor
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.models import ClaimedTask, FileRecord, LeaseState, WorkerRecord
from visionatrix.storage.files import TaskStorage
from visionatrix.worker.progress import ProgressTracker

log = logging.getLogger(__name__)


@dataclass
class WorkerOptions:
    """Every knob of the loop, with units in the names."""

    worker_id: str
    installed_flows: Sequence[str] | Callable[[], Sequence[str]]
    """The flows this worker may take, or a callable asked before each claim (flows installed while running)."""
    mode: str = "DEFAULT"
    lease_s: float = 60.0
    progress_interval_s: float = 0.5
    idle_poll_max_s: float = 1.0
    seen_interval_s: float = 10.0


@dataclass
class _Running:
    task: ClaimedTask
    tracker: ProgressTracker = field(default_factory=ProgressTracker)
    cancel_requested: bool = False
    lease_lost: bool = False
    shutting_down: bool = False


class Worker:
    """Runs tasks from ``queue`` with ``executor``; inputs and outputs live in ``storage``."""

    def __init__(self, queue: TaskQueue, storage: TaskStorage, executor: Executor, options: WorkerOptions,
                 *, wakeup: asyncio.Event | None = None) -> None:
        self.queue = queue
        self.storage = storage
        self.executor = executor
        self.options = options
        self.wakeup = wakeup or asyncio.Event()
        self.last_flow: str | None = None
        self.current: _Running | None = None
        self._last_seen_report = 0.0

    async def run(self, stop: asyncio.Event, *, burst: bool = False) -> int:
        """Take and run tasks until ``stop`` is set (or, in ``burst`` mode, until the queue is empty).

        Returns how many tasks this call ran.
        """
        ran = 0
        idle_s = 0.0
        while not stop.is_set():
            try:
                await self._report_seen()
                task = await self.queue.claim_next(self.options.worker_id, self._installed(),
                                                   last_flow=self.last_flow)
            except Exception:
                log.exception("worker %s: claiming failed; retrying", self.options.worker_id)
                task = None
            if task is None:
                if burst:
                    break
                idle_s = min(self.options.idle_poll_max_s, idle_s + 0.05)
                await self._idle(stop, idle_s)
                continue
            idle_s = 0.0
            ran += 1
            try:
                await self._run_task(task, stop)
            except Exception:
                log.exception("worker %s: task %s ended with an unexpected error", self.options.worker_id, task.id)
        await self._report_seen(force=True, stopping=True)
        return ran

    def _installed(self) -> list[str]:
        flows = self.options.installed_flows
        return list(flows() if callable(flows) else flows)

    async def _idle(self, stop: asyncio.Event, timeout_s: float) -> None:
        self.wakeup.clear()
        waiters = [asyncio.ensure_future(self.wakeup.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _report_seen(self, *, force: bool = False, stopping: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_seen_report < self.options.seen_interval_s:
            return
        self._last_seen_report = now
        current = None if stopping or self.current is None else self.current.task.id
        record = WorkerRecord(worker_id=self.options.worker_id, mode=self.options.mode,
                              device=self.executor.device, installed_flows=self._installed(),
                              current_task_id=current, last_seen_at=datetime.now(UTC))
        try:
            await self.queue.upsert_worker(record)
        except Exception:  # the worker row is informational; the next report retries
            log.warning("worker %s: could not record that it is alive", self.options.worker_id, exc_info=True)

    async def _run_task(self, task: ClaimedTask, stop: asyncio.Event) -> None:
        running = _Running(task)
        self.current = running
        self.last_flow = task.flow
        await self._report_seen(force=True)
        keeper = asyncio.create_task(self._keep_lease(running, stop))
        output_dir = self.storage.output_dir(task.id)
        await asyncio.to_thread(shutil.rmtree, output_dir, True)  # a requeued task's earlier partial results
        try:
            result = await self.executor.execute(
                task.graph, prompt_id=str(task.id), on_event=running.tracker,
                input_dir=self.storage.input_dir(task.id), output_dir=self.storage.output_dir(task.id),
                extra_data={"extra_pnginfo": {"visionatrix_task": {"id": task.id, "flow": task.flow}}})
        except Interrupted:
            await self._stopped(running)
        except NodeFailed as exc:
            await self._guarded(running, self.queue.mark_failed(
                task.id, task.lease_token, node_id=exc.node_id, class_type=exc.class_type, message=str(exc),
                traceback=getattr(exc, "traceback", "")))
        except InvalidGraph as exc:
            await self._guarded(running, self.queue.mark_failed(
                task.id, task.lease_token, node_id=None, class_type=None,
                message="; ".join(exc.issue_lines()), traceback=""))
        else:
            outputs = self._outputs(task.id, result)
            await self._guarded(running, self.queue.mark_finished(task.id, task.lease_token,
                                                                  timings=result.timings_s, outputs=outputs))
        finally:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
            self.current = None
            await self._report_seen(force=True)

    async def _stopped(self, running: _Running) -> None:
        """The run was interrupted: cancelled by a user, lease lost, or this worker is shutting down."""
        task = running.task
        if running.lease_lost:
            log.warning("task %s: lease lost; its result is dropped", task.id)
        elif running.cancel_requested:
            await self._guarded(running, self.queue.mark_cancelled(task.id, task.lease_token))
        else:
            await self._guarded(running, self.queue.release(task.id, task.lease_token))

    async def _guarded(self, running: _Running, call: Any) -> None:
        try:
            await call
        except LeaseLost:
            log.warning("task %s: lease lost before its outcome was stored; dropped", running.task.id)

    async def _keep_lease(self, running: _Running, stop: asyncio.Event) -> None:
        """Report throttled progress and extend the lease; interrupt on cancel, lost lease or shutdown."""
        task = running.task
        tick_s = max(0.05, min(self.options.progress_interval_s, self.options.lease_s / 3))
        last_extended = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=tick_s)
            running.shutting_down = running.shutting_down or stop.is_set()
            state: LeaseState | None = None
            try:
                if running.tracker.changed:
                    running.tracker.mark_reported()
                    state = await self.queue.report_progress(task.id, task.lease_token,
                                                             progress=running.tracker.percent,
                                                             current_node=running.tracker.current_node)
                    last_extended = time.monotonic()
                elif time.monotonic() - last_extended >= self.options.lease_s / 3:
                    state = await self.queue.extend_lease(task.id, task.lease_token)
                    last_extended = time.monotonic()
            except LeaseLost:
                running.lease_lost = True
                self.executor.interrupt()
                return
            except Exception:
                log.exception("task %s: progress report failed; will retry", task.id)
            if state is not None and state.cancel_requested:
                running.cancel_requested = True
            if running.cancel_requested or running.shutting_down:
                self.executor.interrupt()  # repeated each tick: a run that had not started yet still stops

    def _outputs(self, task_id: int, result: events.ExecutionResult) -> list[FileRecord]:
        """Output files on disk, each tied to the output node that reported it."""
        owners = {name: node_id for node_id, name in result.output_files()}
        return [FileRecord(kind="output", name=name, node_id=owners.get(name), size_bytes=info.size_bytes,
                           sha256=info.sha256, param=None)
                for name, info in self.storage.describe_outputs(task_id)]
