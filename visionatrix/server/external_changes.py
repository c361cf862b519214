"""Events for what other processes change: Database-FS workers write task progress and their reports straight to the
database, so this server's event hub would never hear of them.

While anyone listens to ``/vapi/events`` (WebSocket or SSE), ``ExternalChanges`` looks every ``interval_s`` at the
workers table (a changed ``last_seen_at`` → ``worker_updated``) and, while a Database-FS worker is online, at the
running (and claimed) tasks and the unfinished tasks it knows of; a difference from what it knows becomes the event
this process would have published (``task_claimed``, ``task_started``, ``task_progressed``,
``task_finished``/``failed``/``cancelled``, ``task_queued`` for a requeue, ``task_deleted``). What this process
publishes itself updates what it knows, so those changes are not announced twice (a change that races with its own
event may be: clients treat events as hints to look again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from visionatrix.queue.events import Event, Subscription, TaskEvents
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.models import TaskStatus, WorkerRecord
from visionatrix.queue.task_states import TaskState, task_states
from visionatrix.server.event_feed import LiveStreams
from visionatrix.server.views import OFFLINE_AFTER_S

log = logging.getLogger(__name__)

INTERVAL_S = 0.5
WATCHED_PENDING = 200
DATABASE_MODE = "WORKER_DB"
FINISHED_EVENTS = {TaskStatus.FINISHED: "task_finished", TaskStatus.FAILED: "task_failed",
                   TaskStatus.CANCELLED: "task_cancelled"}
FINISHED_STATUSES = frozenset(status.value for status in FINISHED_EVENTS)
HELD = frozenset({TaskStatus.CLAIMED.value, TaskStatus.RUNNING.value})
"""A worker holds the task (it is watched until it ends)."""
_Known = tuple[str, float, str | None]
"""A task's status, progress and current node as last announced."""


class ExternalChanges:
    def __init__(self, queue: TaskQueue, events: TaskEvents, streams: LiveStreams, *,
                 interval_s: float = INTERVAL_S) -> None:
        self.queue = queue
        self.events = events
        self.streams = streams
        self.interval_s = interval_s
        self._tasks: dict[int, _Known] = {}
        self._workers: dict[str, datetime] | None = None
        self._heard: Subscription | None = None
        self._job: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._heard = self.events.subscribe()
        self._job = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._job is not None:
            self._job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._job

    async def _run(self) -> None:
        assert self._heard is not None
        try:
            while True:
                await asyncio.sleep(self.interval_s)
                if not self.streams.listeners:  # nobody to tell: forget, so that nothing grows meanwhile
                    self._heard.drain()
                    self._tasks.clear()
                    self._workers = None  # the first look after a quiet spell only learns the workers
                    continue
                try:
                    await self.look()
                except Exception:  # the database may be away for a moment; the next look tries again
                    log.warning("looking for changes by other processes failed", exc_info=True)
        finally:
            await self._heard.aclose()

    def _learn(self, events: list[Event]) -> None:
        """What this process announced itself (tasks' states), so that a look does not announce it again."""
        for event in events:
            task_id, kind = event.get("task_id"), str(event.get("type"))
            if not isinstance(task_id, int) or not kind.startswith("task_"):
                continue
            if kind == "task_deleted":
                self._tasks.pop(task_id, None)
                continue
            old = self._tasks.get(task_id, ("", 0.0, None))
            status = str(event.get("status") or old[0])
            if status in FINISHED_STATUSES:
                self._tasks.pop(task_id, None)
                continue
            progress = event.get("progress", 0.0 if status == TaskStatus.PENDING.value else old[1])
            self._tasks[task_id] = (status, float(progress or 0.0), event.get("current_node", old[2]))

    async def look(self) -> None:
        """One look at the workers and (while a Database-FS worker is around) the tasks; public for tests."""
        if self._heard is not None:
            self._learn(self._heard.drain())
        workers = await self.queue.list_workers()
        self._announce_workers(workers)
        now = datetime.now(UTC)
        if any(worker.mode == DATABASE_MODE and (now - worker.last_seen_at).total_seconds() < OFFLINE_AFTER_S
               for worker in workers):
            asked = self._watched_ids()
            self._announce_tasks(asked, await task_states(self.queue.engine, asked))

    def _watched_ids(self) -> list[int]:
        """The known running tasks and the oldest known pending ones (the next to be claimed). Pending tasks past
        those are forgotten (a backlog would otherwise be held here): when one starts, the look at the running
        tasks finds it."""
        running = [task_id for task_id, known in self._tasks.items() if known[0] in HELD]
        pending = sorted(task_id for task_id, known in self._tasks.items() if known[0] not in HELD)
        for task_id in pending[WATCHED_PENDING:]:
            del self._tasks[task_id]
        return running + pending[:WATCHED_PENDING]

    def _announce_workers(self, workers: list[WorkerRecord]) -> None:
        seen = {worker.worker_id: worker.last_seen_at for worker in workers}
        if self._workers is not None:
            for worker_id, last_seen in seen.items():
                if self._workers.get(worker_id) != last_seen:
                    self._publish({"type": "worker_updated", "worker_id": worker_id})
        self._workers = seen

    def _announce_tasks(self, asked: list[int], states: list[TaskState]) -> None:
        found = {state.id for state in states}
        for task_id in asked:
            if task_id not in found and self._tasks.pop(task_id, None) is not None:
                self._publish({"type": "task_deleted", "task_id": task_id})
        for state in states:
            event = self._change(state)
            if event is not None:
                self._publish({"task_id": state.id, "flow": state.flow, "status": state.status.value, **event})

    def _change(self, state: TaskState) -> dict[str, Any] | None:
        """The event for what changed in ``state`` since it was last announced (None: nothing did)."""
        old = self._tasks.get(state.id)
        status = state.status
        if status in FINISHED_EVENTS:
            self._tasks.pop(state.id, None)
            return {"type": FINISHED_EVENTS[status]} if old is not None else None
        self._tasks[state.id] = (status.value, state.progress, state.current_node)
        if status is TaskStatus.PENDING:
            if old is not None and old[0] in HELD:
                return {"type": "task_queued", "requeued": True}
            return None
        if status is TaskStatus.CLAIMED:
            if old is None or old[0] != TaskStatus.CLAIMED.value:
                return {"type": "task_claimed", "worker_id": state.worker_id}
            return None
        if old is None or old[0] != TaskStatus.RUNNING.value:
            return {"type": "task_started", "worker_id": state.worker_id, "progress": state.progress,
                    "current_node": state.current_node}
        if (old[1], old[2]) != (state.progress, state.current_node):
            return {"type": "task_progressed", "progress": state.progress, "current_node": state.current_node}
        return None

    def _publish(self, event: Event) -> None:
        self.events.publish({**event, "external": True})

