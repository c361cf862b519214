"""The lease holder's writes: heartbeat, start, progress, finish, fail, cancelled, release; and the requeue of
expired leases.

``LeaseWrites`` is a base of ``TaskQueue`` (same engine, same write mechanics, same events); it holds no state of
its own. Each write is guarded by the lease (``WHERE id = ? AND lease_token = ? AND status = 'running'``); no row
matched raises ``LeaseLost``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, case, insert, literal, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.dml import Update

from visionatrix.db.postgres_writer import Merge
from visionatrix.db.tables import TaskFile
from visionatrix.db.types import UTCDateTime
from visionatrix.errors import LeaseLost
from visionatrix.queue import driver, lease, merges, records, writes
from visionatrix.queue.claim import TASKS
from visionatrix.queue.models import FileRecord, LeaseState, TaskStatus

FILES = cast(Table, TaskFile.__table__)
T = TASKS.c
WORKER_LOST = "worker lost"
"""The error message of a task whose lease expired once too often (``max_attempts``)."""


def _now() -> datetime:
    return datetime.now(UTC)


class LeaseWrites:
    engine: AsyncEngine
    writes: writes.Writes
    driver: driver.Driver | None
    lease_s: float
    max_attempts: int
    _finish_merge: Merge | None
    _publish: Callable[..., None]
    _wake: Callable[[str], None]

    def _leased(self, task_id: int, lease_token: str) -> Update:
        return update(TASKS).where(T.id == task_id, T.lease_token == lease_token,
                                   T.status == TaskStatus.RUNNING.value)

    async def extend_lease(self, task_id: int, lease_token: str) -> LeaseState:
        """Heartbeat: the lease runs ``lease_s`` from now. ``LeaseLost`` when the token no longer owns the task."""
        values = lease.params(task_id, lease_token, lease_expires_at=_now() + timedelta(seconds=self.lease_s))
        async with self.writes.single() as conn:
            row = await self.writes.update_one(conn, task_id, lease.extend(), (T.cancel_requested,), values)
        if row is None:
            raise LeaseLost(task_id)
        return LeaseState(cancel_requested=bool(row.cancel_requested))

    async def mark_started(self, task_id: int, lease_token: str) -> LeaseState:
        """The worker starts executing the claimed task: it shows ``running`` from now, and its run is timed from
        now (``started_at``); extends the lease too. ``LeaseLost`` when the token no longer owns the task — a task
        cancelled while it was claimed is never run."""
        now = _now()
        values = lease.params(task_id, lease_token, now=now, lease_expires_at=now + timedelta(seconds=self.lease_s))
        columns = (T.flow, T.cancel_requested, T.worker_id, T.attempt)
        row: Any
        if self.driver is not None:  # one driver call, like the claim and the finish that surround it
            statement = self.driver.statement(("started",), lambda: (
                lease.returning(lease.started(), columns), columns))
            rows = await self.driver.write(statement, values)
            row = rows[0] if rows else None
        else:
            async with self.writes.single() as conn:
                row = await self.writes.update_one(conn, task_id, lease.started(), columns, values)
        if row is None:
            raise LeaseLost(task_id)
        flow, cancel_requested, worker_id, attempt = row
        self._publish("task_started", task_id, flow, status=TaskStatus.RUNNING.value, worker_id=worker_id,
                      attempt=attempt)
        return LeaseState(cancel_requested=bool(cancel_requested))

    async def report_progress(self, task_id: int, lease_token: str, *, progress: float,
                              current_node: str | None) -> LeaseState:
        """Store progress (0..100) and the running node; extends the lease too. Callers throttle."""
        now = _now()
        values = lease.params(task_id, lease_token, progress=min(100.0, max(0.0, float(progress))),
                              current_node=current_node, now=now,
                              lease_expires_at=now + timedelta(seconds=self.lease_s))
        async with self.writes.single() as conn:
            row = await self.writes.update_one(conn, task_id, lease.progress(), (T.flow, T.cancel_requested), values)
        if row is None:
            raise LeaseLost(task_id)
        self._publish("task_progressed", task_id, row.flow, status=TaskStatus.RUNNING.value, progress=progress,
                      current_node=current_node)
        return LeaseState(cancel_requested=bool(row.cancel_requested))

    def _ended(self, task_id: int, lease_token: str, status: TaskStatus, **values: Any) -> Update:
        now = _now()
        return self._leased(task_id, lease_token).values(
            status=status.value, lease_token=None, lease_expires_at=None, current_node=None, finished_at=now,
            updated_at=now, **values)

    async def mark_finished(self, task_id: int, lease_token: str, *, timings: dict[str, float],
                            outputs: Sequence[FileRecord] = (), peak_vram_bytes: int | None = None) -> None:
        """The run succeeded: ``finished``, progress 100, its timings, output file rows and the GPU memory peak the
        worker measured (None: not measured). ``LeaseLost``."""
        values = lease.params(task_id, lease_token, timings={str(k): float(v) for k, v in timings.items()},
                              peak_vram_bytes=records.byte_count(peak_vram_bytes), now=_now())
        flow: str
        if self.driver is not None and not outputs:
            statement = self.driver.statement(("finished",), lambda: (
                lease.returning(lease.finished(), (T.flow,)), (T.flow,)))
            if self._finish_merge is None and self.driver.is_postgresql:
                self._finish_merge = merges.finish_merge(statement)
            rows = await self.driver.write(statement, values, merge=self._finish_merge)
            if not rows:
                raise LeaseLost(task_id)
            flow = rows[0][0]
        else:
            connect = self.engine.begin() if outputs else self.writes.single()
            async with connect as conn:
                row = await self.writes.update_one(conn, task_id, lease.finished(), (T.flow,), values)
                if row is None:
                    raise LeaseLost(task_id)
                if outputs:
                    await conn.execute(insert(FILES), [records.file_row(task_id, record) for record in outputs])
            flow = row.flow
        self._publish("task_finished", task_id, flow, status=TaskStatus.FINISHED.value)

    async def mark_failed(self, task_id: int, lease_token: str, *, node_id: str | None, class_type: str | None,
                          message: str, traceback: str | None, peak_vram_bytes: int | None = None) -> None:
        """The run failed: ``failed`` with the node id, class, message and traceback (and the GPU memory peak, when
        the worker measured it). ``LeaseLost``."""
        error = {"node_id": node_id, "class_type": class_type, "message": message, "traceback": traceback}
        ended = self._ended(task_id, lease_token, TaskStatus.FAILED, error=error,
                            peak_vram_bytes=records.byte_count(peak_vram_bytes))
        async with self.writes.single() as conn:
            row = await self.writes.update_one(conn, task_id, ended, (T.flow,))
        if row is None:
            raise LeaseLost(task_id)
        self._publish("task_failed", task_id, row.flow, status=TaskStatus.FAILED.value,
                      error={k: v for k, v in error.items() if k != "traceback"})

    async def mark_cancelled(self, task_id: int, lease_token: str) -> None:
        """The worker stopped the run of a cancelled task: ``cancelled``. ``LeaseLost``."""
        async with self.writes.single() as conn:
            row = await self.writes.update_one(conn, task_id, self._ended(task_id, lease_token, TaskStatus.CANCELLED),
                                         (T.flow,))
        if row is None:
            raise LeaseLost(task_id)
        self._publish("task_cancelled", task_id, row.flow, status=TaskStatus.CANCELLED.value)

    async def release(self, task_id: int, lease_token: str) -> None:
        """Graceful worker shutdown: the task goes back to ``pending`` and this attempt is not counted (a task
        whose cancel was requested becomes ``cancelled`` instead). ``LeaseLost``."""
        now = _now()
        stmt = self._leased(task_id, lease_token).values(
            status=case((T.cancel_requested, TaskStatus.CANCELLED.value), else_=TaskStatus.PENDING.value),
            finished_at=case((T.cancel_requested, literal(now, UTCDateTime())), else_=None),
            attempt=case((T.attempt > 0, T.attempt - 1), else_=0),
            **records.RESET_RUN, updated_at=now)
        async with self.writes.single() as conn:
            row = await self.writes.update_one(conn, task_id, stmt, (T.flow, T.status))
        if row is None:
            raise LeaseLost(task_id)
        if row.status == TaskStatus.PENDING.value:
            self._wake(row.flow)
        if row.status == TaskStatus.CANCELLED.value:
            self._publish("task_cancelled", task_id, row.flow, status=row.status)
        else:
            self._publish("task_queued", task_id, row.flow, status=row.status, requeued=True, reason="released")

    async def requeue_expired(self, now: datetime | None = None) -> int:
        """Tasks whose lease expired before ``now``: back to ``pending`` (attempt kept), or ``failed`` with the
        message "worker lost" once they were tried ``max_attempts`` times, or ``cancelled`` when a cancel was
        requested. How many tasks were moved."""
        now = now or _now()
        expired = [T.status == TaskStatus.RUNNING.value, T.lease_expires_at < now]
        lost = {"node_id": None, "class_type": None, "message": WORKER_LOST, "traceback": None}
        ended = {"lease_token": None, "lease_expires_at": None, "current_node": None, "finished_at": now,
                 "updated_at": now}
        moves = [
            (TaskStatus.CANCELLED, update(TASKS).where(*expired, T.cancel_requested)
             .values(status=TaskStatus.CANCELLED.value, **ended)),
            (TaskStatus.FAILED, update(TASKS).where(*expired, T.attempt >= self.max_attempts)
             .values(status=TaskStatus.FAILED.value, error=lost, **ended)),
            (TaskStatus.PENDING, update(TASKS).where(*expired)
             .values(status=TaskStatus.PENDING.value, **records.RESET_RUN, updated_at=now)),
        ]
        moved = 0
        for status, stmt in moves:
            async with self.writes.single() as conn:
                rows = await self.writes.update_many(conn, stmt, (T.flow,))
            if status is TaskStatus.PENDING:
                for flow in {row.flow for row in rows}:
                    self._wake(flow)
            moved += len(rows)
            for row in rows:
                if status is TaskStatus.PENDING:
                    self._publish("task_queued", row.id, row.flow, status=status.value, requeued=True,
                                  reason="lease expired")
                elif status is TaskStatus.FAILED:
                    self._publish("task_failed", row.id, row.flow, status=status.value,
                                  error={k: v for k, v in lost.items() if k != "traceback"})
                else:
                    self._publish("task_cancelled", row.id, row.flow, status=status.value)
        return moved
