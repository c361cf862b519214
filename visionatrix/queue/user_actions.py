"""The user's side of the task lifecycle: cancel, restart and delete; who owns which task.

``UserActions`` is a base of ``TaskQueue`` (same engine, same write mechanics, same events); it holds no state of
its own. Each action is a compare-and-set on the status in the ``WHERE`` clause; ``Conflict`` names the status that
refused it, ``NotFound`` an unknown task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from visionatrix.db.tables import TaskFile
from visionatrix.errors import Conflict, NotFound
from visionatrix.queue import records, writes
from visionatrix.queue.claim import TASKS
from visionatrix.queue.models import TaskRecord, TaskStatus
from visionatrix.queue.records import AnyRow

FILES = cast(Table, TaskFile.__table__)
T = TASKS.c


def _now() -> datetime:
    return datetime.now(UTC)


class UserActions:
    engine: AsyncEngine
    writes: writes.Writes
    is_mysql: bool
    _publish: Callable[..., None]
    _wake: Callable[[str], None]
    get: Callable[[int], Awaitable[TaskRecord]]

    async def _state_conflict(self, task_id: int, action: str) -> Conflict:
        """``NotFound`` when the task does not exist, else the ``Conflict`` to raise for ``action``."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(T.status, T.started_at).where(T.id == task_id))).first()
        if row is None:
            raise NotFound("task", str(task_id))
        return Conflict(f"task {task_id} is {records.shown_status(row.status, row.started_at)}: it cannot be {action}")

    async def pending_count(self, owner_id: int) -> int:
        """How many pending tasks ``owner_id`` has (the per-user limit)."""
        query = select(func.count()).select_from(TASKS).where(T.owner_id == owner_id,
                                                              T.status == TaskStatus.PENDING.value)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def owners(self, task_ids: Collection[int]) -> dict[int, int | None]:
        """``{task id: owner id}`` of those of ``task_ids`` that exist (owner None: created with sign-in off)."""
        if not task_ids:
            return {}
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(T.id, T.owner_id).where(T.id.in_(list(task_ids))))).all()
        return {int(row.id): row.owner_id for row in rows}

    async def cancel(self, task_id: int) -> TaskRecord:
        """A pending task becomes ``cancelled`` at once, and so does a claimed one (its lease is taken back: the
        worker's start report then finds no lease, and it drops the task unrun); a running one is flagged
        (``cancel_requested``), and its worker sees the flag on its next heartbeat. Otherwise ``Conflict``;
        ``NotFound``."""
        now = _now()
        at_once = (update(TASKS).where(T.id == task_id, T.status == TaskStatus.PENDING.value)
                   .values(status=TaskStatus.CANCELLED.value, finished_at=now, updated_at=now))
        claimed = (update(TASKS).where(T.id == task_id, records.status_condition([TaskStatus.CLAIMED]))
                   .values(status=TaskStatus.CANCELLED.value, cancel_requested=True, lease_token=None,
                           lease_expires_at=None, current_node=None, finished_at=now, updated_at=now))
        flagged = (update(TASKS).where(T.id == task_id, T.status == TaskStatus.RUNNING.value)
                   .values(cancel_requested=True, updated_at=now))
        for stmt in (at_once, claimed):
            async with self.writes.single() as conn:
                row = await self.writes.update_one(conn, task_id, stmt, (T.flow,))
            if row is not None:
                self._publish("task_cancelled", task_id, row.flow, status=TaskStatus.CANCELLED.value)
                return await self.get(task_id)
        async with self.writes.single() as conn:
            row = await self.writes.update_one(conn, task_id, flagged, (T.flow,))
        if row is None:
            raise await self._state_conflict(task_id, "cancelled")
        return await self.get(task_id)

    async def restart(self, task_id: int) -> TaskRecord:
        """A failed or cancelled task goes back to ``pending`` (attempt 0, error, progress and the GPU memory
        peak cleared, output rows removed). Otherwise ``Conflict``; ``NotFound``."""
        now = _now()
        stmt = (update(TASKS)
                .where(T.id == task_id, T.status.in_([TaskStatus.FAILED.value, TaskStatus.CANCELLED.value]))
                .values(status=TaskStatus.PENDING.value, attempt=0, error=None, timings={}, peak_vram_bytes=None,
                        cancel_requested=False, finished_at=None, **records.RESET_RUN, updated_at=now))
        async with self.engine.begin() as conn:
            row = await self.writes.update_one(conn, task_id, stmt, (T.flow,))
            if row is not None:
                await conn.execute(delete(FILES).where(FILES.c.task_id == task_id, FILES.c.kind == "output"))
        if row is None:
            raise await self._state_conflict(task_id, "restarted")
        self._wake(row.flow)
        self._publish("task_restarted", task_id, row.flow, status=TaskStatus.PENDING.value)
        return await self.get(task_id)

    async def delete(self, task_id: int) -> None:
        """Remove the task and its file rows. A running task must be cancelled first (``Conflict``); ``NotFound``."""
        async with self.engine.begin() as conn:
            row = await self._delete_unless_running(conn, task_id)
        if row is None:
            raise await self._state_conflict(task_id, "deleted while it runs; cancel it first")
        self._publish("task_deleted", task_id, row.flow, status=row.status)

    async def _delete_unless_running(self, conn: AsyncConnection, task_id: int) -> AnyRow | None:
        where = [T.id == task_id, T.status != TaskStatus.RUNNING.value]
        if self.is_mysql:
            row = (await conn.execute(select(T.flow, T.status).where(*where).with_for_update())).first()
            if row is not None:
                await conn.execute(delete(TASKS).where(*where))
        else:
            row = (await conn.execute(delete(TASKS).where(*where).returning(T.flow, T.status))).first()
        if row is not None:  # the foreign key cascades; this also covers a SQLite connection without it
            await conn.execute(delete(FILES).where(FILES.c.task_id == task_id))
        return row
