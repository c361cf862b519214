"""The ``workers`` table: each worker's last report, and the flows an admin lets it take.

``WorkerRows`` is a base of ``TaskQueue`` (same engine, same write mechanics, same events); it holds no state of its
own. Each stored report and each change of the allowed flows publishes ``{"type": "worker_updated", "worker_id"}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from sqlalchemy import Table, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from visionatrix.db.tables import Worker
from visionatrix.errors import NotFound
from visionatrix.queue import records, writes
from visionatrix.queue.events import TaskEvents
from visionatrix.queue.models import WorkerRecord

WORKERS = cast(Table, Worker.__table__)
W = WORKERS.c


class WorkerRows:
    engine: AsyncEngine
    writes: writes.Writes
    events: TaskEvents | None

    def _worker_updated(self, worker_id: str) -> None:
        if self.events is not None:
            self.events.publish({"type": "worker_updated", "worker_id": worker_id})

    async def upsert_worker(self, record: WorkerRecord) -> list[str] | None:
        """Store a worker's report (insert or replace its row, never its ``allowed_flows``); the flows an admin
        lets it take (None: all it has installed)."""
        async with self.writes.single() as conn:
            await conn.execute(self.writes.upsert(WORKERS, records.worker_row(record), "worker_id"))
        self._worker_updated(record.worker_id)
        return await self.allowed_flows(record.worker_id)

    async def allowed_flows(self, worker_id: str) -> list[str] | None:
        """The flows an admin lets ``worker_id`` take; None when unrestricted (or the worker is unknown)."""
        async with self.engine.connect() as conn:
            allowed = (await conn.execute(select(W.allowed_flows).where(W.worker_id == worker_id))).scalar()
        return None if allowed is None else [str(flow) for flow in allowed]

    async def set_allowed_flows(self, worker_id: str, flows: Sequence[str] | None) -> WorkerRecord:
        """Restrict ``worker_id`` to ``flows`` (None lifts the restriction). ``NotFound`` for a worker that never
        reported."""
        value = None if flows is None else [str(flow) for flow in flows]
        async with self.engine.begin() as conn:
            changed = (await conn.execute(update(WORKERS).where(W.worker_id == worker_id)
                                          .values(allowed_flows=value))).rowcount
            if not changed:  # MySQL counts changed rows, not matched ones: look before calling it unknown
                exists = (await conn.execute(select(W.worker_id).where(W.worker_id == worker_id))).first()
                if exists is None:
                    raise NotFound("worker", worker_id)
            row = (await conn.execute(select(WORKERS).where(W.worker_id == worker_id))).one()
        self._worker_updated(worker_id)
        return records.worker_record(row)

    async def list_workers(self) -> list[WorkerRecord]:
        """Every worker's last report, by worker id."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(WORKERS).order_by(W.worker_id))).all()
        return [records.worker_record(row) for row in rows]
