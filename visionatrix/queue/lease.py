"""The statements a worker's lease guards, built once (on first use) with bound parameters.

Every one is ``UPDATE tasks SET ... WHERE id = :p_task_id AND lease_token = :p_lease_token AND status = 'running'``:
no row matched means the lease is lost. Building them once keeps SQLAlchemy from constructing and hashing a new
statement tree on every heartbeat, progress report and finish.
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, cast

from sqlalchemy import JSON, BigInteger, Double, Update, bindparam, func, update
from sqlalchemy.sql.elements import BindParameter

from visionatrix.db.types import UTCDateTime
from visionatrix.queue.claim import RUNNING, TASKS, status_is

T = TASKS.c


def params(task_id: int, lease_token: str, **values: Any) -> dict[str, Any]:
    """The parameters of a lease statement: ``p_task_id``, ``p_lease_token`` and ``p_<name>`` for each value."""
    return {"p_task_id": task_id, "p_lease_token": lease_token, **{f"p_{k}": v for k, v in values.items()}}


def _now() -> BindParameter[datetime]:
    return bindparam("p_now", type_=UTCDateTime())


def _guarded(**values: Any) -> Update:
    return (update(TASKS)
            .where(T.id == bindparam("p_task_id"), T.lease_token == bindparam("p_lease_token"), status_is(RUNNING))
            .values(**values))


@functools.cache
def extend() -> Update:
    """Heartbeat: ``p_lease_expires_at``."""
    return _guarded(lease_expires_at=bindparam("p_lease_expires_at", type_=UTCDateTime()))


def _started_at() -> Any:
    """``started_at`` kept once set, else now: the first report of a run marks its start."""
    return func.coalesce(T.started_at, _now())


@functools.cache
def started() -> Update:
    """The worker starts executing the task (it was ``claimed`` until now), which extends the lease too: ``p_now``,
    ``p_lease_expires_at``. Said again (a retried request), it keeps the first start."""
    return _guarded(started_at=_started_at(), updated_at=_now(),
                    lease_expires_at=bindparam("p_lease_expires_at", type_=UTCDateTime()))


@functools.cache
def progress() -> Update:
    """Progress report, which extends the lease too (and marks the run started, for a worker that does not report
    the start): ``p_progress``, ``p_current_node``, ``p_now``, ``p_lease_expires_at``."""
    return _guarded(progress=bindparam("p_progress", type_=Double()), current_node=bindparam("p_current_node"),
                    started_at=_started_at(), updated_at=_now(),
                    lease_expires_at=bindparam("p_lease_expires_at", type_=UTCDateTime()))


@functools.cache
def finished() -> Update:
    """The run succeeded: ``p_timings``, ``p_peak_vram_bytes``, ``p_now``."""
    return _guarded(status="finished", progress=100.0, timings=bindparam("p_timings", type_=JSON()),
                    peak_vram_bytes=bindparam("p_peak_vram_bytes", type_=BigInteger()),
                    lease_token=None, lease_expires_at=None, current_node=None, finished_at=_now(),
                    updated_at=_now())


@functools.cache
def returning(stmt: Update, columns: tuple[Any, ...]) -> Update:
    """``stmt`` with ``RETURNING columns``, built once per pair."""
    return cast(Update, stmt.returning(*columns))
