"""The ``workers`` table: each worker's last report, and the flows an admin lets it take; ``worker_commands``: what
an admin asked a worker to do, taken by the worker with its next report.

``WorkerRows`` is a base of ``TaskQueue`` (same engine, same write mechanics, same events); it holds no state of its
own. Each stored report and each change of the allowed flows publishes ``{"type": "worker_updated", "worker_id"}``;
a report with installs in progress also publishes one ``model_progress`` event (with ``worker_id``) per install.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from visionatrix.db.tables import Worker, WorkerCommand
from visionatrix.errors import NotFound
from visionatrix.queue import records, writes
from visionatrix.queue.events import TaskEvents
from visionatrix.queue.models import WorkerRecord

WORKERS = cast(Table, Worker.__table__)
W = WORKERS.c
COMMANDS = cast(Table, WorkerCommand.__table__)
C = COMMANDS.c


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
        async with self.engine.connect() as conn:
            before = (await conn.execute(select(W.allowed_flows, W.models)
                                         .where(W.worker_id == record.worker_id))).first()
        async with self.writes.single() as conn:
            await conn.execute(self.writes.upsert(WORKERS, records.worker_row(record), "worker_id"))
        self._worker_updated(record.worker_id)
        self._models_progressed(record, before.models if before is not None else None)
        allowed = before.allowed_flows if before is not None else None
        return None if allowed is None else [str(flow) for flow in allowed]

    def _models_progressed(self, record: WorkerRecord, before: dict[str, Any] | None) -> None:
        """A ``model_progress`` event for each install the worker reports (its models folder, not the server's)
        that moved since its last report: an ended install stays in the reports for a while, announced once."""
        installing = (record.models or {}).get("installing") or {}
        known = (before or {}).get("installing") or {} if isinstance(before, dict) else {}
        if self.events is not None:
            for name, progress in installing.items():
                if known.get(name) != progress:
                    self.events.publish({**progress, "type": "model_progress", "name": name,
                                         "worker_id": record.worker_id})

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

    async def queue_command(self, worker_id: str, command: dict[str, Any]) -> None:
        """Ask ``worker_id`` to do ``command`` (a JSON object with a ``type``) with its next report; ``NotFound`` for
        a worker that never reported."""
        async with self.engine.begin() as conn:
            if (await conn.execute(select(W.worker_id).where(W.worker_id == worker_id))).first() is None:
                raise NotFound("worker", worker_id)
            await conn.execute(insert(COMMANDS).values(worker_id=worker_id, command=dict(command),
                                                       created_at=datetime.now(UTC)))

    async def take_commands(self, worker_id: str) -> list[dict[str, Any]]:
        """The commands waiting for ``worker_id``, oldest first; each is handed out once (deleted as it is taken)."""
        async with self.engine.begin() as conn:
            rows = (await conn.execute(select(C.id, C.command).where(C.worker_id == worker_id).order_by(C.id)
                                       .with_for_update())).all()
            if rows:
                await conn.execute(delete(COMMANDS).where(C.id.in_([row.id for row in rows])))
        return [dict(row.command) for row in rows if isinstance(row.command, dict)]

    async def list_workers(self) -> list[WorkerRecord]:
        """Every worker's last report, by worker id."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(WORKERS).order_by(W.worker_id))).all()
        return [records.worker_record(row) for row in rows]
