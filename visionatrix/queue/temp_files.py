"""Tasks' temporary outputs (``task_files.kind = 'temp'``: previews) that have grown old.

A finished task keeps its previews until it is deleted or until ``finished_at`` lies further back than the age
limit; then :func:`delete_old_temps` removes their rows, and the caller removes their files (``TaskStorage``).
"""

from __future__ import annotations

from datetime import datetime
from typing import cast

from sqlalchemy import Table, delete, select

from visionatrix.db.tables import Task, TaskFile
from visionatrix.queue.manager import TaskQueue

TASKS = cast(Table, Task.__table__)
FILES = cast(Table, TaskFile.__table__)
BATCH = 500


async def delete_old_temps(queue: TaskQueue, *, finished_before: datetime, limit: int = BATCH) -> list[int]:
    """Remove the temp file rows of up to ``limit`` tasks that ended before ``finished_before``; returns those
    tasks' ids (their files are the caller's to remove)."""
    query = (select(FILES.c.task_id).distinct()
             .join(TASKS, TASKS.c.id == FILES.c.task_id)
             .where(FILES.c.kind == "temp", TASKS.c.finished_at.is_not(None),
                    TASKS.c.finished_at < finished_before)
             .order_by(FILES.c.task_id).limit(limit))
    async with queue.engine.begin() as conn:
        task_ids = [int(row[0]) for row in await conn.execute(query)]
        if task_ids:
            await conn.execute(delete(FILES).where(FILES.c.kind == "temp", FILES.c.task_id.in_(task_ids)))
    return task_ids
