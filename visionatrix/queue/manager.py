"""``TaskQueue``: every query of the task lifecycle — create, claim, start, heartbeat, progress, finish, fail, cancel,
restart, delete, requeue of expired leases — and the worker heartbeat rows.

Rules every write follows:

- A worker's write is guarded by its lease: ``UPDATE ... WHERE id = ? AND lease_token = ? AND status = 'running'``;
  no row matched means another run owns the task or it was requeued, and ``LeaseLost`` is raised.
- A state change is a compare-and-set on the status in the ``WHERE`` clause, never a read then a write, so two
  callers racing cannot both win. A transaction's first statement is its write (SQLite then takes its write lock
  at once and a stale read snapshot can never make it fail).
- Single statements run in autocommit on PostgreSQL and SQLite (no BEGIN/COMMIT round trips); MySQL/MariaDB, which
  cannot ``UPDATE ... RETURNING``, reads the changed row back inside the same short transaction.
- Events are published after the commit, never for a change that rolled back.
"""

from __future__ import annotations

import builtins
import functools
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Select, Table, bindparam, case, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import Update

from visionatrix.db.postgres_writer import Merge, PostgresWriter
from visionatrix.db.tables import Task, TaskFile, Worker
from visionatrix.db.types import UTCDateTime
from visionatrix.errors import LeaseLost, NotFound
from visionatrix.queue import claim, driver, lease, merges, records, writes
from visionatrix.queue.events import TaskEvents
from visionatrix.queue.models import ClaimedTask, FileRecord, LeaseState, TaskRecord, TaskStatus
from visionatrix.queue.notifier import WakeupNotifier
from visionatrix.queue.records import AnyRow
from visionatrix.queue.user_actions import UserActions
from visionatrix.queue.worker_rows import WorkerRows

TASKS = cast(Table, Task.__table__)
FILES = cast(Table, TaskFile.__table__)
WORKERS = cast(Table, Worker.__table__)
T = TASKS.c
MERGES_KEPT = 256
"""Claim merges remembered (one per set of installed flows and affinity flow)."""
WORKER_LOST = "worker lost"
"""The error message of a task whose lease expired once too often (``max_attempts``)."""


def _now() -> datetime:
    return datetime.now(UTC)


@functools.cache
def _claim_update(affinity: bool, dialect: str) -> Update:
    return claim.claim_update(affinity=affinity, dialect=dialect)


@functools.cache
def _locked_candidate(affinity: bool) -> Select[Any]:
    return claim.locked_candidate(affinity=affinity)


@functools.cache
def _update_locked() -> Update:
    return claim.update_locked()


@functools.cache
def _claimed_row() -> Select[Any]:
    return claim.claimed_row()


class TaskQueue(WorkerRows, UserActions):
    """The task queue over ``engine``. ``lease_s``: how long a claim or heartbeat keeps a task; ``max_attempts``:
    runs of one task before an expired lease fails it; ``events``: where task events are published."""

    def __init__(self, engine: AsyncEngine, *, lease_s: float = 60.0, max_attempts: int = 3,
                 events: TaskEvents | None = None) -> None:
        if lease_s <= 0:
            raise ValueError("lease_s must be positive")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.engine = engine
        self.lease_s = lease_s
        self.max_attempts = max_attempts
        self.events = events
        self.writes = writes.Writes(engine)
        self.is_mysql = self.writes.is_mysql
        self.driver = driver.Driver(engine) if driver.supports(engine) else None
        self._finish_merge: Merge | None = None
        self._claim_merges: dict[tuple[tuple[str, ...], str | None], Merge] = {}
        self.notifier = (WakeupNotifier(self.driver.plain)
                         if self.driver is not None and isinstance(self.driver.plain, PostgresWriter) else None)

    async def aclose(self) -> None:
        """Send the wake-ups on their way, stop the queue's own SQLite writer thread and give the PostgreSQL
        writer's connections back (the engine stays open: its owner disposes of it)."""
        if self.notifier is not None:
            await self.notifier.flush()
        if self.driver is not None:
            await self.driver.aclose()

    def publish_preview(self, task_id: int, flow: str, node_id: str, image: bytes) -> None:
        """A running task's preview image (JPEG), for this process's event subscribers; never stored."""
        self._publish("task_preview", task_id, flow, node_id=node_id, image=image)

    def _wake(self, flow: str) -> None:
        """PostgreSQL: after the commit, tell the listening Database-FS workers (``wakeups.TaskWakeups``) that a task
        of ``flow`` may be claimable (``notifier.WakeupNotifier``: coalesced, never inside the transaction)."""
        if self.notifier is not None:
            self.notifier.notify(flow)

    def _publish(self, kind: str, task_id: int, flow: str, **fields: Any) -> None:
        if self.events is not None:
            self.events.publish({"type": kind, "task_id": task_id, "flow": flow, **fields})

    # -- creating and reading ----------------------------------------------------------------------------------

    async def create(self, flow: str, graph: dict[str, Any], params: dict[str, Any], *, count: int = 1,
                     priority: int = 0, files: Iterable[FileRecord] = (),
                     before_commit: Callable[[builtins.list[int]], Awaitable[None]] | None = None,
                     columns: dict[str, Any] | None = None) -> builtins.list[int]:
        """``count`` pending tasks (and their input ``task_files`` rows) in one transaction; their ids, in order.

        ``before_commit`` is awaited with the ids inside the transaction; when it raises, nothing is kept and no
        event is published. ``columns``: more values for every row (a prompt's ``prompt_id``, ...).
        """
        if count < 1:
            raise ValueError("count must be at least 1")
        now = _now()
        row = {"flow": flow, "status": TaskStatus.PENDING.value, "priority": priority, "params": params,
               "graph": graph, "progress": 0.0, "current_node": None, "worker_id": None, "attempt": 0,
               "cancel_requested": False, "error": None, "timings": {}, "lease_token": None,
               "lease_expires_at": None, "created_at": now, "started_at": None, "finished_at": None,
               "updated_at": now, **(columns or {})}
        inputs = list(files)
        if self.driver is not None and count == 1 and not inputs and before_commit is None:
            task_ids = [await self._insert_on_driver(self.driver, row)]
        else:
            task_ids = await self._create_in_transaction(count, row, inputs, before_commit)
        self._wake(flow)
        for task_id in task_ids:
            self._publish("task_queued", task_id, flow, status=TaskStatus.PENDING.value, priority=priority)
        return task_ids

    async def _create_in_transaction(self, count: int, row: dict[str, Any], inputs: builtins.list[FileRecord],
                                     before_commit: Callable[[builtins.list[int]], Awaitable[None]] | None,
                                     ) -> builtins.list[int]:
        async with self.engine.begin() as conn:
            task_ids = await self._insert_tasks(conn, [dict(row) for _ in range(count)])
            if inputs:
                await conn.execute(insert(FILES), [records.file_row(task_id, record)
                                                   for task_id in task_ids for record in inputs])
            if before_commit is not None:
                await before_commit(list(task_ids))
        return task_ids

    async def _insert_on_driver(self, on: driver.Driver, row: dict[str, Any]) -> int:
        """One task as one ``INSERT ... RETURNING id`` on the driver (autocommit; grouped with other writes on
        SQLite). The statement is built once per set of columns (a prompt brings three more)."""
        names = tuple(row)
        statement = on.statement(("create", names), lambda: (
            insert(TASKS).values({name: bindparam(f"p_{name}", type_=T[name].type) for name in names})
            .returning(T.id), (T.id,)))
        rows = await on.write(statement, {f"p_{name}": value for name, value in row.items()})
        return int(rows[0][0])

    async def _insert_tasks(self, conn: AsyncConnection,
                            rows: builtins.list[dict[str, Any]]) -> builtins.list[int]:
        if conn.dialect.insert_executemany_returning_sort_by_parameter_order:
            result = await conn.execute(insert(TASKS).returning(T.id, sort_by_parameter_order=True), rows)
            return [int(task_id) for task_id in result.scalars()]
        ids = []  # MySQL 8: no RETURNING; one INSERT per row (its auto-increment ids may interleave with others)
        for row in rows:
            key = (await conn.execute(insert(TASKS), row)).inserted_primary_key
            assert key is not None
            ids.append(int(key[0]))
        return ids

    async def get(self, task_id: int) -> TaskRecord:
        """The task with its files; ``NotFound``."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(TASKS).where(T.id == task_id))).first()
            if row is None:
                raise NotFound("task", str(task_id))
            files = await self._files(conn, [task_id])
        return records.task_record(row, files.get(task_id, []))

    async def list(self, *, status: TaskStatus | None = None, flow: str | None = None, limit: int = 50,
                   offset: int = 0, owner_id: int | None = None) -> builtins.list[TaskRecord]:
        """Tasks, newest first, optionally of one status, flow and/or owner (``users.id``)."""
        query = select(TASKS).order_by(T.id.desc()).limit(limit).offset(offset)
        if owner_id is not None:
            query = query.where(T.owner_id == owner_id)
        if status is not None:
            query = query.where(records.status_condition([TaskStatus(status)]))
        if flow is not None:
            query = query.where(T.flow == flow)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            files = await self._files(conn, [row.id for row in rows])
        return [records.task_record(row, files.get(row.id, [])) for row in rows]

    async def _files(self, conn: AsyncConnection, task_ids: builtins.list[int]) -> dict[int, builtins.list[FileRecord]]:
        if not task_ids:
            return {}
        rows = await conn.execute(select(FILES).where(FILES.c.task_id.in_(task_ids)).order_by(FILES.c.id))
        found: dict[int, builtins.list[FileRecord]] = {}
        for row in rows:
            found.setdefault(row.task_id, []).append(records.file_record(row))
        return found

    # -- the worker's side: claim, lease, outcome --------------------------------------------------------------

    async def claim_next(self, worker_id: str, installed_flows: Sequence[str], *,
                         last_flow: str | None = None) -> ClaimedTask | None:
        """Take the next pending task of one of ``installed_flows`` (priority desc, ``last_flow`` first, then
        FIFO) and lease it to ``worker_id``; None when there is none."""
        if not installed_flows:
            return None
        now = _now()
        token = secrets.token_hex(16)
        expires_at = now + timedelta(seconds=self.lease_s)
        affinity = claim.affinity_flow(installed_flows, last_flow) is not None
        values = claim.claim_params(installed_flows, last_flow, worker_id, token, expires_at, now)
        if self.driver is not None:
            row = await self._claim_on_driver(self.driver, affinity, installed_flows, values)
        elif self.is_mysql:
            row = await self._claim_in_transaction(affinity, values)
        else:  # pragma: no cover - every backend but MySQL/MariaDB has the driver path
            async with self.writes.single() as conn:
                row = (await conn.execute(_claim_update(affinity, self.writes.backend), values)).first()
        if row is None:
            return None
        task_id, flow, graph, params, attempt = row
        self._publish("task_claimed", task_id, flow, status=TaskStatus.CLAIMED.value, worker_id=worker_id,
                      attempt=attempt)
        return ClaimedTask(id=task_id, flow=flow, graph=graph, params=params, lease_token=token,
                           lease_expires_at=expires_at, attempt=attempt)

    async def _claim_on_driver(self, on: driver.Driver, affinity: bool, installed_flows: Sequence[str],
                               values: dict[str, Any]) -> tuple[Any, ...] | None:
        """The claim's one ``UPDATE ... RETURNING`` (columns ``claim.CLAIMED_COLUMNS``) on the driver connection.
        PostgreSQL takes the installed flows as one array; SQLite's statement has one parameter per flow."""
        dialect = self.writes.backend
        flows = None if on.is_postgresql else len(installed_flows)
        if flows is not None:
            values = {**values, **claim.installed_params(installed_flows)}
        statement = on.statement(("claim", affinity, flows), lambda: (
            claim.claim_update(affinity=affinity, dialect=dialect, flows=flows), claim.CLAIMED_COLUMNS))
        merge = self._claim_merge(statement, installed_flows, values[claim.LAST_FLOW] if affinity else None) \
            if on.is_postgresql else None
        rows = await on.write(statement, values, merge=merge)
        return rows[0] if rows else None

    def _claim_merge(self, statement: driver.DriverStatement, installed_flows: Sequence[str],
                     affinity_flow: str | None) -> Merge:
        """The claim's ``Merge``, built once per set of flows (at most ``MERGES_KEPT`` sets are remembered)."""
        key = (tuple(installed_flows), affinity_flow)
        found = self._claim_merges.get(key)
        if found is None:
            if len(self._claim_merges) >= MERGES_KEPT:
                self._claim_merges.clear()
            found = self._claim_merges[key] = merges.claim_merge(statement, installed_flows, affinity_flow)
        return found

    async def _claim_in_transaction(self, affinity: bool, values: dict[str, Any]) -> AnyRow | None:
        for _ in range(3):
            async with self.engine.begin() as conn:
                task_id = (await conn.execute(_locked_candidate(affinity), values)).scalar()
                if task_id is None:
                    return None
                # The row is locked, so the guard holds; should it not, another run won and we pick again.
                chosen = {**values, claim.TASK_ID: task_id}
                if (await conn.execute(_update_locked(), chosen)).rowcount == 1:
                    return (await conn.execute(_claimed_row(), chosen)).first()
        return None

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
