"""The records that cross the queue's boundary: plain dataclasses, never ORM objects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class TaskStatus(StrEnum):
    """Where a task is in its lifecycle: ``pending → claimed → running → finished | failed | cancelled``.

    ``claimed`` is shown, never stored: a worker holds the task's lease (the row's status is ``running``) but has not
    started executing it yet (``started_at`` is NULL) — it was claimed ahead while the worker's executor runs another
    task, or its inputs are being prepared. ``records.status_condition`` turns statuses into the SQL that finds
    them."""

    PENDING = "pending"
    CLAIMED = "claimed"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass
class FileRecord:
    """An input or output file of a task."""

    kind: str
    """``"input"`` or ``"output"``."""
    name: str
    """Relative to the task's ``input/`` or ``output/`` folder (may contain one subfolder)."""
    node_id: str | None
    size_bytes: int
    sha256: str
    param: str | None


@dataclass
class TaskRecord:
    """A task as the API shows it."""

    id: int
    flow: str
    status: TaskStatus
    priority: int
    params: dict[str, Any]
    graph: dict[str, Any]
    progress: float
    """0..100."""
    current_node: str | None
    worker_id: str | None
    attempt: int
    cancel_requested: bool
    error: dict[str, Any] | None
    """``{"node_id", "class_type", "message", "traceback"}`` of a failed task."""
    timings: dict[str, float]
    """Node id -> seconds."""
    created_at: datetime | None
    started_at: datetime | None
    """When its execution started (None while pending or claimed): a run's duration is timed from here."""
    finished_at: datetime | None
    updated_at: datetime | None
    files: list[FileRecord] = field(default_factory=list)
    peak_vram_bytes: int | None = None
    """The most bytes torch held allocated on the worker's GPU during the run (None: a CPU worker, not run yet, or
    not measured)."""
    owner_id: int | None = None
    """The ``users.id`` of whoever created the task; None when sign-in was off."""
    webhook: dict[str, Any] | None = None
    """``{"url", "headers"}`` called when the task ends; its headers are never shown by the API."""


@dataclass
class ClaimedTask:
    """What a worker gets from ``claim_next``: the work and the lease that lets it report on it."""

    id: int
    flow: str
    graph: dict[str, Any]
    params: dict[str, Any]
    lease_token: str
    lease_expires_at: datetime
    attempt: int


@dataclass
class LeaseState:
    """The answer to a heartbeat or progress report."""

    cancel_requested: bool
    """The worker must interrupt the run and then call ``mark_cancelled``."""


@dataclass
class WorkerRecord:
    """A worker's last heartbeat."""

    worker_id: str
    mode: str
    device: str
    installed_flows: list[str]
    current_task_id: int | None
    last_seen_at: datetime
    allowed_flows: list[str] | None = None
    """The flows an admin lets this worker take; None: every flow it has installed."""
    node_types: list[str] | None = None
    """The node types registered on the worker (its report; not stored): it may take prompts made of them."""
    resources: dict[str, Any] | None = None
    """Memory in bytes, each None when unknown: ``device_name``, ``device_memory_total``, ``device_memory_free``
    (the accelerator's; for a CPU device, the host's), ``ram_total``, ``ram_free``."""
    stopped_at: datetime | None = None
    """Set by the worker's last report on its way out."""
    models: dict[str, Any] | None = None
    """The worker's models: ``present`` (names of the catalog models in its models folder), ``loaded`` (what its
    model manager holds: ``name``, ``kind``, ``bytes``, ``where``), ``ram_bytes``, ``vram_bytes`` and ``installing``
    (model name → the install's progress)."""


AHEAD_GRACE_S = 0.25
"""How long a claim made ahead (its worker's executor is busy) waits after a wake-up before it claims: workers
that are idle, woken by the same new task, take it first."""


def effective_flows(installed: Sequence[str], allowed: Sequence[str] | None) -> list[str]:
    """The flows a worker may be given: ``installed`` restricted to ``allowed`` (in installed order)."""
    if allowed is None:
        return list(installed)
    permitted = set(allowed)
    return [flow for flow in installed if flow in permitted]
