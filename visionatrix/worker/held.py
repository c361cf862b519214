"""``HeldTask``: one task this worker holds a lease on, from its claim to its outcome, and the keeper that keeps
that lease alive.

The keeper runs for as long as the task is held — while its inputs are prepared and it waits to run (claimed
ahead), while it runs (then it also writes throttled progress and interrupts the executor on a cancel, a lost lease
or a shutdown), and while its results are stored. The loop (``daemon.Worker``) decides what happens to the task;
the keeper only reports what the source answered (``cancel_requested``, ``lease_lost``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from visionatrix.errors import LeaseLost
from visionatrix.queue.models import ClaimedTask, LeaseState
from visionatrix.worker.previews import encode_preview
from visionatrix.worker.progress import ProgressTracker
from visionatrix.worker.source import SourceStopped, TaskSource
from visionatrix.worker.waiting import cancel_and_wait, wait_event

log = logging.getLogger(__name__)

MIN_TICK_S = 0.02


@dataclass
class HeldTask:
    """A claimed task and what the worker knows about its lease."""

    task: ClaimedTask
    heartbeat_s: float
    """How often the lease is extended when there is no progress to write."""
    tracker: ProgressTracker = field(default_factory=ProgressTracker)
    input_dir: Path | None = None
    output_dir: Path | None = None
    running: bool = False
    """The executor is running it now (only then does the keeper write progress or interrupt)."""
    cancel_requested: bool = False
    lease_lost: bool = False
    keeper: asyncio.Task[None] | None = None

    @classmethod
    def of(cls, task: ClaimedTask, lease_s: float) -> HeldTask:
        """``task`` with a heartbeat every third of its lease (``lease_s``, or less when the claim says the lease is
        shorter)."""
        left_s = (task.lease_expires_at - datetime.now(UTC)).total_seconds()
        if 0 < left_s < lease_s:
            lease_s = left_s
        return cls(task, heartbeat_s=max(MIN_TICK_S, lease_s / 3))

    async def stop_keeping(self) -> None:
        """Stop the keeper (the lease then runs out unless the task was concluded)."""
        keeper, self.keeper = self.keeper, None
        await cancel_and_wait(keeper)


class LeaseKeeper:
    """Keeps the leases of held tasks: ``start(held)`` runs a keeper task for it.

    ``interrupt`` stops the executor's current run; ``stopping`` is the worker's shutdown (the running task is then
    interrupted too); ``on_stopped`` is told when the source says the worker must stop.
    """

    def __init__(self, source: TaskSource, *, progress_interval_s: float, interrupt: Callable[[], None],
                 stopping: asyncio.Event, on_stopped: Callable[[SourceStopped], None]) -> None:
        self.source = source
        self.progress_interval_s = progress_interval_s
        self.interrupt = interrupt
        self.stopping = stopping
        self.on_stopped = on_stopped
        self.halted = False
        """The source said the worker must stop: no more heartbeats (they would be refused too)."""

    def start(self, held: HeldTask) -> None:
        held.keeper = asyncio.create_task(self._keep(held), name=f"vix-lease-{held.task.id}")

    async def begin(self, held: HeldTask) -> bool:
        """Report that the run of ``held`` starts now (``TaskSource.start``); False when it must not run: its lease
        is gone (``held.lease_lost``: cancelled while it was claimed, or expired) or its cancel was requested. A
        start report that failed otherwise is logged and the run goes on (the first progress report marks the
        start then)."""
        try:
            state = await self.source.start(held.task)
        except LeaseLost:
            log.info("task %s: no longer this worker's (cancelled while it waited?); not run", held.task.id)
            held.lease_lost = True
            return False
        except SourceStopped as exc:
            self.halted = True
            self.on_stopped(exc)
            return False
        except Exception:
            log.warning("task %s: reporting its start failed; running it anyway", held.task.id, exc_info=True)
            return True
        if state.cancel_requested:
            held.cancel_requested = True
        return not held.cancel_requested

    def _should_interrupt(self, held: HeldTask) -> bool:
        return held.running and (held.cancel_requested or held.lease_lost or self.stopping.is_set())

    async def _tick(self, tick_s: float) -> None:
        """Sleep ``tick_s``; the moment the worker starts stopping, wake early once."""
        if self.stopping.is_set():
            await asyncio.sleep(tick_s)
            return
        await wait_event(self.stopping, tick_s)

    async def _keep(self, held: HeldTask) -> None:
        tick_s = max(MIN_TICK_S, min(self.progress_interval_s, held.heartbeat_s))
        extended_at = time.monotonic()
        while True:
            await self._tick(tick_s)
            if self._should_interrupt(held):
                self.interrupt()  # repeated each tick: a run that had not started yet still stops
            if self.halted:
                continue
            progress = None
            if held.running and held.tracker.changed:
                held.tracker.mark_reported()
                progress = held.tracker.percent
            elif time.monotonic() - extended_at < held.heartbeat_s:
                continue
            state = await self._beat(held, progress)
            if progress is not None and state is not None:
                await self._show_preview(held)
            if state is None:
                if held.lease_lost:
                    if held.running:
                        self.interrupt()
                    return
                continue
            extended_at = time.monotonic()
            if state.cancel_requested and not held.cancel_requested:
                held.cancel_requested = True
                if held.running:
                    self.interrupt()

    async def _show_preview(self, held: HeldTask) -> None:
        """Send the newest preview of the running node, if it made one; best effort (a lost preview is replaced by
        the next)."""
        taken = held.tracker.take_preview()
        if taken is None:
            return
        node_id, preview = taken
        try:
            image = await asyncio.to_thread(encode_preview, preview)
            if image is not None:
                await self.source.preview(held.task, node_id, image)
        except LeaseLost:
            pass  # the next heartbeat says so
        except Exception:
            log.warning("task %s: a preview of node %s was not sent", held.task.id, node_id, exc_info=True)

    async def _beat(self, held: HeldTask, progress: float | None) -> LeaseState | None:
        """One heartbeat; None when it failed (``held.lease_lost`` tells whether for good)."""
        task = held.task
        current_node = held.tracker.current_node if progress is not None else None
        try:
            return await self.source.heartbeat(task, progress, current_node)
        except LeaseLost:
            log.warning("task %s: lease lost", task.id)
            held.lease_lost = True
        except SourceStopped as exc:
            self.halted = True
            self.on_stopped(exc)
        except Exception:
            log.exception("task %s: heartbeat failed; will retry", task.id)
        return None
