"""A light look at tasks' progress (no graph, params or files), for watching what other processes change; a status
is the one shown (``claimed`` until the run starts)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from visionatrix.db.tables import Task
from visionatrix.queue.models import TaskStatus
from visionatrix.queue.records import shown_status

TASKS = cast(Table, Task.__table__)
T = TASKS.c
MAX_IDS = 1000
"""At most this many ids are asked for by id in one look (a longer list is cut; the running tasks always count)."""


@dataclass(frozen=True)
class TaskState:
    id: int
    flow: str
    status: TaskStatus
    progress: float
    current_node: str | None
    worker_id: str | None


async def task_states(engine: AsyncEngine, ids: Collection[int]) -> list[TaskState]:
    """The running and claimed tasks plus those of ``ids`` that still exist (any status), by id."""
    wanted = sorted(ids)[-MAX_IDS:]
    condition = T.status == TaskStatus.RUNNING.value
    if wanted:
        condition = or_(condition, T.id.in_(wanted))
    query = (select(T.id, T.flow, T.status, T.started_at, T.progress, T.current_node, T.worker_id)
             .where(condition).order_by(T.id))
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [TaskState(row.id, row.flow, shown_status(row.status, row.started_at), float(row.progress or 0.0),
                      row.current_node, row.worker_id) for row in rows]
