"""``TaskQueue``: every query of the task lifecycle — create, claim, start, heartbeat, progress, finish, fail, cancel,
restart, delete, requeue of expired leases — and the worker heartbeat rows. This module holds construction,
create/get/list and the claim; its bases hold the rest: ``lease_writes.LeaseWrites`` (the lease holder's writes and
the requeue of expired leases), ``user_actions.UserActions`` (cancel, restart, delete) and
``worker_rows.WorkerRows`` (the workers table).

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

from sqlalchemy import Select, Table, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.dml import Update

from visionatrix.db.postgres_writer import Merge, PostgresWriter
from visionatrix.db.tables import Task, TaskFile, Worker
from visionatrix.errors import NotFound
from visionatrix.queue import claim, driver, merges, records, vacuum, writes
from visionatrix.queue.events import TaskEvents
from visionatrix.queue.lease_writes import WORKER_LOST as WORKER_LOST
from visionatrix.queue.lease_writes import LeaseWrites
from visionatrix.queue.models import ClaimedTask, FileRecord, TaskRecord, TaskStatus
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


class TaskQueue(LeaseWrites, WorkerRows, UserActions):
    """The task queue over ``engine``. ``lease_s``: how long a claim or heartbeat keeps a task; ``max_attempts``:
    runs of one task before an expired lease fails it; ``events``: where task events are published;
    ``vacuum_every``: PostgreSQL, claims between two vacuums of ``tasks`` (``queue.vacuum``), 0: never."""

    def __init__(self, engine: AsyncEngine, *, lease_s: float = 60.0, max_attempts: int = 3,
                 events: TaskEvents | None = None, vacuum_every: int = vacuum.DEFAULT_EVERY) -> None:
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
        self.vacuum = (vacuum.TableVacuum(engine, every=vacuum_every)
                       if vacuum_every > 0 and engine.dialect.name == "postgresql" else None)

    async def aclose(self) -> None:
        """Send the wake-ups on their way, stop the queue's own SQLite writer thread and give the PostgreSQL
        writer's connections back (the engine stays open: its owner disposes of it)."""
        if self.notifier is not None:
            await self.notifier.flush()
        if self.vacuum is not None:
            await self.vacuum.aclose()
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

    # -- the worker's side: the claim --------------------------------------------------------------------------

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
        if self.vacuum is not None:
            self.vacuum.claimed()
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
