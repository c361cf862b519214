"""Rows to records and records to rows: the queue's only translation between the tables and its dataclasses."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any, TypeAlias, cast

from sqlalchemy import ColumnElement, Row, Table, and_, false, or_

from visionatrix.db.tables import FILE_KINDS, Task
from visionatrix.queue.models import FileRecord, TaskRecord, TaskStatus, WorkerRecord

AnyRow: TypeAlias = "Row[*tuple[Any, ...]]"
"""A result row of any columns."""

RESET_RUN: dict[str, Any] = {"lease_token": None, "lease_expires_at": None, "worker_id": None, "progress": 0.0,
                             "current_node": None, "started_at": None}
"""What a task going back to ``pending`` forgets of its last run."""


T = cast(Table, Task.__table__).c


def shown_status(stored: str, started_at: datetime | None) -> TaskStatus:
    """The status a row shows: a ``running`` row whose execution has not started yet is ``claimed``."""
    if stored == TaskStatus.RUNNING.value and started_at is None:
        return TaskStatus.CLAIMED
    return TaskStatus(stored)


def status_condition(statuses: Collection[TaskStatus]) -> ColumnElement[bool]:
    """The rows that show one of ``statuses`` (``shown_status``): ``claimed`` and ``running`` are both stored as
    ``running``, told apart by ``started_at``."""
    wanted = {TaskStatus(status) for status in statuses}
    stored = [status.value for status in TaskStatus if status in wanted and status is not TaskStatus.CLAIMED
              and status is not TaskStatus.RUNNING]
    parts: list[ColumnElement[bool]] = []
    if stored:
        parts.append(T.status == stored[0] if len(stored) == 1 else T.status.in_(stored))
    held = T.status == TaskStatus.RUNNING.value
    if TaskStatus.CLAIMED in wanted and TaskStatus.RUNNING in wanted:
        parts.append(held)
    elif TaskStatus.CLAIMED in wanted:
        parts.append(and_(held, T.started_at.is_(None)))
    elif TaskStatus.RUNNING in wanted:
        parts.append(and_(held, T.started_at.is_not(None)))
    if not parts:
        return false()
    return parts[0] if len(parts) == 1 else or_(*parts)


def task_record(row: AnyRow, files: list[FileRecord]) -> TaskRecord:
    return TaskRecord(
        id=row.id, flow=row.flow, status=shown_status(row.status, row.started_at), priority=row.priority,
        params=row.params, graph=row.graph, progress=float(row.progress), current_node=row.current_node,
        worker_id=row.worker_id, attempt=row.attempt, cancel_requested=bool(row.cancel_requested), error=row.error,
        timings=dict(row.timings or {}), created_at=row.created_at, started_at=row.started_at,
        finished_at=row.finished_at, updated_at=row.updated_at, files=files, peak_vram_bytes=row.peak_vram_bytes,
        owner_id=row.owner_id, webhook=row.webhook)


def byte_count(value: int | None) -> int | None:
    """A count of bytes for a ``BIGINT`` column (``tasks.peak_vram_bytes``): None, or a whole number 0..2**63-1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValueError(f"a byte count is a whole number from 0 to 2**63-1, not {value!r}")
    return value


def file_record(row: AnyRow) -> FileRecord:
    return FileRecord(kind=row.kind, name=row.name, node_id=row.node_id, size_bytes=row.size_bytes,
                      sha256=row.sha256, param=row.param)


def file_row(task_id: int, record: FileRecord) -> dict[str, Any]:
    if record.kind not in FILE_KINDS:
        raise ValueError(f"a file's kind is one of {', '.join(FILE_KINDS)}, not {record.kind!r}")
    return {"task_id": task_id, "kind": record.kind, "name": record.name, "node_id": record.node_id,
            "size_bytes": record.size_bytes, "sha256": record.sha256, "param": record.param}


def worker_record(row: AnyRow) -> WorkerRecord:
    return WorkerRecord(worker_id=row.worker_id, mode=row.mode, device=row.device,
                        installed_flows=list(row.installed_flows or []), current_task_id=row.current_task_id,
                        last_seen_at=row.last_seen_at,
                        allowed_flows=None if row.allowed_flows is None else list(row.allowed_flows),
                        resources=dict(row.resources) if isinstance(row.resources, dict) else None,
                        stopped_at=row.stopped_at, models=dict(row.models) if isinstance(row.models, dict) else None)


def worker_row(record: WorkerRecord) -> dict[str, Any]:
    return {"worker_id": record.worker_id, "mode": record.mode, "device": record.device,
            "installed_flows": list(record.installed_flows), "current_task_id": record.current_task_id,
            "last_seen_at": record.last_seen_at, "resources": record.resources, "stopped_at": record.stopped_at,
            "models": record.models}
