"""``WebhookWatcher``: learns of every task with a webhook that ends (finished, failed, cancelled) and hands its
delivery to the ``Deliverer``.

Two ways in, one delivery: the server's event hub tells of what this process did (the in-process worker of DEFAULT
mode, HTTP workers reporting through the worker API, cancels, expired leases); while a Database-FS worker is online
(it writes straight to the database, and this process publishes nothing for it), a look every ``interval_s`` at the
unfinished tasks that have a webhook finds those that ended meanwhile. A task's end is delivered once per terminal
state this process sees, keyed by ``(task id, status, finished_at)``: a restarted task that ends again is delivered
again. The limits: a task that ends while no server runs is not delivered; with several server processes in front
of one database, each delivers what its own workers report and, for Database-FS workers, each may deliver the same
end (receivers deduplicate by ``X-Visionatrix-Delivery``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, select

from visionatrix.db.tables import Task
from visionatrix.errors import NotFound
from visionatrix.queue.events import Subscription, TaskEvents
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.models import TaskRecord, TaskStatus
from visionatrix.server.views import OFFLINE_AFTER_S, file_url
from visionatrix.server.webhooks.delivery import Deliverer, Delivery

log = logging.getLogger(__name__)

TASKS = cast(Table, Task.__table__)
T = TASKS.c
INTERVAL_S = 1.0
WATCHED_PENDING = 1000
SEEN_KEPT = 10_000
IN_CHUNK = 500
DATABASE_MODE = "WORKER_DB"
ENDED = {TaskStatus.FINISHED: "task_finished", TaskStatus.FAILED: "task_failed",
         TaskStatus.CANCELLED: "task_cancelled"}
ENDED_EVENTS = frozenset(ENDED.values())
NEW_EVENTS = frozenset({"task_queued", "task_restarted"})


class WebhookWatcher:
    def __init__(self, queue: TaskQueue, events: TaskEvents, deliverer: Deliverer, *,
                 interval_s: float = INTERVAL_S) -> None:
        self.queue = queue
        self.events = events
        self.deliverer = deliverer
        self.interval_s = interval_s
        self._seen: collections.OrderedDict[tuple[int, str, str], None] = collections.OrderedDict()
        self._watched: set[int] = set()
        self._fresh: set[int] = set()
        self._jobs: list[asyncio.Task[None]] = []

    def start(self) -> None:
        subscription = self.events.subscribe()
        self._jobs = [asyncio.create_task(self._listen(subscription)), asyncio.create_task(self._look_often())]

    async def stop(self) -> None:
        for job in self._jobs:
            job.cancel()
        for job in self._jobs:
            with contextlib.suppress(asyncio.CancelledError):
                await job
        self._jobs = []

    async def _listen(self, subscription: Subscription) -> None:
        dropped = 0
        try:
            async for event in subscription:
                if subscription.dropped != dropped:  # fell behind the hub: an end may have been missed
                    log.warning("webhooks missed %d task events", subscription.dropped - dropped)
                    dropped = subscription.dropped
                task_id, kind = event.get("task_id"), event.get("type")
                if not isinstance(task_id, int):
                    continue
                if kind in NEW_EVENTS:
                    self._fresh.add(task_id)
                elif kind in ENDED_EVENTS:
                    try:
                        await self.consider(task_id)
                    except Exception:  # the database may be away for a moment; never let the listener die
                        log.warning("webhook of task %d not sent: reading the task failed", task_id, exc_info=True)
        finally:
            await subscription.aclose()

    async def _look_often(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                if await self._database_worker_online():
                    await self.look()
                else:
                    self._watched.clear()
                    self._fresh.clear()
            except Exception:
                log.warning("looking for ended tasks with webhooks failed", exc_info=True)

    async def _database_worker_online(self) -> bool:
        now = datetime.now(UTC)
        return any(worker.mode == DATABASE_MODE and (now - worker.last_seen_at).total_seconds() < OFFLINE_AFTER_S
                   for worker in await self.queue.list_workers())

    async def look(self) -> None:
        """Deliver for the tasks with a webhook that were unfinished at the last look (or queued through this
        process since) and are not now; public for tests."""
        unfinished = await self._unfinished_with_webhooks()
        gone = (self._watched | self._fresh) - unfinished
        self._watched, self._fresh = unfinished, set()
        for task_id in await self._ended_with_webhooks(gone):
            await self.consider(task_id)

    async def _unfinished_with_webhooks(self) -> set[int]:
        """The running tasks with a webhook and the oldest ``WATCHED_PENDING`` pending ones."""
        found: set[int] = set()
        async with self.queue.engine.connect() as conn:
            for status, limit in ((TaskStatus.RUNNING, None), (TaskStatus.PENDING, WATCHED_PENDING)):
                query = (select(T.id).where(T.status == status.value, T.webhook.is_not(None))
                         .order_by(T.id).limit(limit))
                found.update(int(task_id) for task_id in (await conn.execute(query)).scalars())
        return found

    async def _ended_with_webhooks(self, task_ids: set[int]) -> list[int]:
        ids, found = sorted(task_ids), []
        async with self.queue.engine.connect() as conn:
            for start in range(0, len(ids), IN_CHUNK):
                query = select(T.id).where(T.id.in_(ids[start:start + IN_CHUNK]), T.webhook.is_not(None),
                                           T.status.in_([status.value for status in ENDED]))
                found += [int(task_id) for task_id in (await conn.execute(query)).scalars()]
        return sorted(found)

    async def consider(self, task_id: int) -> bool:
        """Submit the delivery of ``task_id``'s end when it has a webhook, has ended and this end was not submitted
        yet; whether it was submitted."""
        try:
            task = await self.queue.get(task_id)
        except NotFound:
            return False
        if not task.webhook or task.status not in ENDED:
            return False
        ended_at = task.finished_at.isoformat() if task.finished_at else ""
        key = (task.id, task.status.value, ended_at)
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > SEEN_KEPT:
            self._seen.popitem(last=False)
        return self.deliverer.submit(delivery_of(task))


def delivery_of(task: TaskRecord) -> Delivery:
    """The delivery of ``task``'s end: its JSON body, and an id a receiver may deduplicate by."""
    assert task.webhook is not None
    event = ENDED[task.status]
    ended_at = task.finished_at.isoformat() if task.finished_at else None
    delivery_id = hashlib.sha256(f"{task.id}:{task.status.value}:{ended_at}".encode()).hexdigest()[:32]
    body = json.dumps(payload(task, event, delivery_id), separators=(",", ":"), ensure_ascii=False).encode()
    return Delivery(task_id=task.id, event=event, url=str(task.webhook["url"]),
                    headers=dict(task.webhook.get("headers") or {}), body=body, delivery_id=delivery_id)


def payload(task: TaskRecord, event: str, delivery_id: str) -> dict[str, Any]:
    error = None
    if task.error:
        error = {key: task.error.get(key) for key in ("node_id", "class_type", "message")}
    return {
        "event": event,
        "delivery_id": delivery_id,
        "task_id": task.id,
        "flow": task.flow,
        "status": task.status.value,
        "error": error,
        "created_at": _iso(task.created_at),
        "started_at": _iso(task.started_at),
        "finished_at": _iso(task.finished_at),
        "outputs": [{"name": f.name, "node_id": f.node_id, "size_bytes": f.size_bytes, "sha256": f.sha256,
                     "url": file_url(task.id, f.kind, f.name)} for f in task.files if f.kind == "output"],
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
