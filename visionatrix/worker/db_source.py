"""``DatabaseSource``: tasks straight from the queue, files in the shared tasks-files folder.

The DEFAULT mode's in-process worker and Database-FS workers (``VIX_MODE=WORKER`` with ``DATABASE_URI``) use it.
A claim that finds nothing waits for a sign that a task may have become claimable — the in-process event the server
sets on ``task_queued`` / ``task_restarted`` (DEFAULT), PostgreSQL's ``NOTIFY`` through ``TaskWakeups`` — or, with
neither, sleeps with backoff from ``poll_min_s`` doubling to ``poll_max_s``; then it claims again, until ``wait_s``
ran out. Even with a wake-up it claims again at least every ``poll_max_s`` (a missed signal costs that much).
A claim made ``ahead`` (the worker is busy) leaves new tasks to idle workers: after a wake-up it pauses
``AHEAD_GRACE_S`` before claiming, and without wake-ups it polls every ``poll_max_s``.
A claim that was woken but still found nothing answers None at once: the task that woke it may be of a flow
installed since the claim began (a flow uploaded just before its first task), and the caller asks again with the
flows it has now.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.models import AHEAD_GRACE_S, ClaimedTask, FileRecord, LeaseState, WorkerRecord
from visionatrix.queue.prompts import PromptTasks
from visionatrix.queue.wakeups import TaskWakeups
from visionatrix.storage.files import TaskStorage
from visionatrix.worker.outputs import run_temp_dir
from visionatrix.worker.waiting import wait_event

log = logging.getLogger(__name__)


class DatabaseSource:
    """Tasks of ``queue``; their files in ``storage``. ``wakeup`` (an event someone sets when a task is queued) and
    ``wakeups`` (PostgreSQL notifications) are optional; with neither the claim polls with backoff."""

    def __init__(self, queue: TaskQueue, storage: TaskStorage, *, mode: str = "WORKER_DB",
                 wakeups: TaskWakeups | None = None, wakeup: asyncio.Event | None = None,
                 poll_min_s: float = 0.05, poll_max_s: float = 2.0,
                 node_types: Collection[str] | None = None) -> None:
        if not 0 < poll_min_s <= poll_max_s:
            raise ValueError("poll_min_s must be positive and not above poll_max_s")
        self.queue = queue
        self.storage = storage
        self.mode = mode
        self.wakeups = wakeups
        self.wakeup = wakeup
        self.poll_min_s = poll_min_s
        self.poll_max_s = poll_max_s
        self.node_types = frozenset(node_types) if node_types is not None else None
        """The node types this worker has: it also takes ComfyUI prompts made of them (None: no prompts)."""
        self.prompts = PromptTasks(queue)

    async def claim(self, worker_id: str, flows: Sequence[str], last_flow: str | None,
                    wait_s: float, *, ahead: bool = False) -> ClaimedTask | None:
        deadline = time.monotonic() + max(0.0, wait_s)
        delay_s = self.poll_max_s if ahead else self.poll_min_s
        woken = False
        while True:
            if woken and ahead:
                await asyncio.sleep(max(0.0, min(AHEAD_GRACE_S, deadline - time.monotonic())))
            if self.wakeup is not None:
                self.wakeup.clear()  # before the claim: a task queued while it runs still wakes the wait below
            task = await self._claim_once(worker_id, flows, last_flow)
            left_s = deadline - time.monotonic()
            if task is not None or left_s <= 0 or woken:
                return task  # after a wake-up: None lets the caller ask again, with the flows it has by then
            woken = await self._wait(left_s, delay_s)
            delay_s = min(self.poll_max_s, delay_s * 2)

    async def _claim_once(self, worker_id: str, flows: Sequence[str], last_flow: str | None) -> ClaimedTask | None:
        """One ``claim_next`` (for ``flows`` and the prompts this worker can run); cancelled while it runs, it gives
        back the task it got (never leased to nobody)."""
        wanted = list(flows)
        if self.node_types is not None:
            wanted += await self.prompts.runnable_flows(self.node_types)
        claiming = asyncio.ensure_future(self.queue.claim_next(worker_id, wanted, last_flow=last_flow))
        try:
            return await asyncio.shield(claiming)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                task = await claiming
                if task is not None:
                    await self.queue.release(task.id, task.lease_token)
            raise

    async def _wait(self, left_s: float, delay_s: float) -> bool:
        """Wait for a sign of a claimable task (at most ``poll_max_s``), or sleep ``delay_s`` without a wake-up
        source; never past ``left_s``. True when a sign came."""
        if self.wakeup is not None:
            return await wait_event(self.wakeup, min(left_s, self.poll_max_s))
        if self.wakeups is not None and self.wakeups.supported:
            return await self.wakeups.wait(min(left_s, self.poll_max_s))
        await asyncio.sleep(min(left_s, delay_s))
        return False

    async def prepare(self, task: ClaimedTask) -> tuple[Path, Path]:
        stale = self.storage.output_dir(task.id)
        await asyncio.to_thread(shutil.rmtree, stale, True)  # a requeued task's partial results
        return self.storage.input_dir(task.id), self.storage.output_dir(task.id)

    async def start(self, task: ClaimedTask) -> LeaseState:
        return await self.queue.mark_started(task.id, task.lease_token)

    async def preview(self, task: ClaimedTask, node_id: str, image: bytes) -> None:
        """To this process's task events (the in-process worker's server shows it; a Database-FS worker has no
        server to tell)."""
        self.queue.publish_preview(task.id, task.flow, node_id, image)

    async def heartbeat(self, task: ClaimedTask, progress: float | None, current_node: str | None) -> LeaseState:
        if progress is None:
            return await self.queue.extend_lease(task.id, task.lease_token)
        return await self.queue.report_progress(task.id, task.lease_token, progress=progress,
                                                current_node=current_node)

    async def finish(self, task: ClaimedTask, timings: dict[str, float],
                     outputs: list[tuple[str, str | None]], *, peak_vram_bytes: int | None = None,
                     temps: Sequence[tuple[str, str | None]] = ()) -> None:
        """The outputs stay where the run wrote them; its temporary folder becomes the task's ``temp/<id>/``."""
        await asyncio.to_thread(self.storage.keep_temps, task.id, run_temp_dir(self.storage.output_dir(task.id)))
        records = await self._records(task, "output", outputs)
        records += await self._records(task, "temp", temps)
        await self.queue.mark_finished(task.id, task.lease_token, timings=timings, outputs=records,
                                       peak_vram_bytes=peak_vram_bytes)

    async def _records(self, task: ClaimedTask, kind: str,
                       files: Sequence[tuple[str, str | None]]) -> list[FileRecord]:
        """The rows of ``files`` (``(name, node_id)``) found in the task's ``kind`` folder, measured there."""
        owners = dict(files)
        described = await asyncio.to_thread(self.storage.describe_outputs, task.id, kind)
        records = [FileRecord(kind=kind, name=name, node_id=owners[name], size_bytes=info.size_bytes,
                              sha256=info.sha256, param=None)
                   for name, info in described if name in owners]
        missing = sorted(set(owners) - {record.name for record in records})
        if missing:
            log.warning("task %s: %s files not found in its folder, not recorded: %s", task.id, kind,
                        ", ".join(missing))
        return records

    async def fail(self, task: ClaimedTask, *, node_id: str | None, class_type: str | None, message: str,
                   traceback: str | None, peak_vram_bytes: int | None = None) -> None:
        await self.queue.mark_failed(task.id, task.lease_token, node_id=node_id, class_type=class_type,
                                     message=message, traceback=traceback, peak_vram_bytes=peak_vram_bytes)

    async def cancelled(self, task: ClaimedTask) -> None:
        await self.queue.mark_cancelled(task.id, task.lease_token)

    async def release(self, task: ClaimedTask) -> None:
        await self.queue.release(task.id, task.lease_token)

    async def report(self, record: WorkerRecord) -> list[str] | None:
        return await self.queue.upsert_worker(record)

    async def take_commands(self, worker_id: str) -> list[dict[str, Any]]:
        return await self.queue.take_commands(worker_id)

    async def cleanup(self, task: ClaimedTask) -> None:
        """Nothing: the task's files are the server's."""

    async def close(self) -> None:
        """Stops listening for notifications (``wakeups`` may also be closed by its owner; closing twice is fine)."""
        if self.wakeups is not None:
            await self.wakeups.close()
