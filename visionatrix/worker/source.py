"""``TaskSource``: what the worker loop needs from the place its tasks come from.

Two sources implement it: ``db_source.DatabaseSource`` (the queue and the shared tasks-files folder: the DEFAULT
mode's in-process worker and Database-FS workers) and ``http_source.HttpSource`` (only the server's worker HTTP API).
The loop (``daemon.Worker``) knows nothing else about either. ``docs/worker.md`` tells the whole story.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from visionatrix.errors import VisionatrixError
from visionatrix.queue.models import ClaimedTask, LeaseState, WorkerRecord


class SourceStopped(VisionatrixError):
    """The task source cannot go on (its credentials were refused, ...); the worker stops."""


class TaskSource(Protocol):
    """Where tasks come from and where their outcomes go.

    Every call that names a task raises ``errors.LeaseLost`` when this worker no longer owns it, and
    ``SourceStopped`` when the worker must stop; the loop treats anything else as a failure of that one call.
    """

    mode: str
    """How the worker reaches its tasks, shown in ``GET /vapi/workers``: ``DEFAULT``, ``WORKER_DB``, ``WORKER_HTTP``."""

    async def claim(self, worker_id: str, flows: Sequence[str], last_flow: str | None,
                    wait_s: float, *, ahead: bool = False) -> ClaimedTask | None:
        """The next task of one of ``flows`` (``last_flow`` preferred), leased to ``worker_id``; waits up to
        ``wait_s`` seconds for one, then None. Cancelling a claim never leaves a task leased to nobody for long.
        ``ahead``: the worker is busy (pipelining); a task that comes while it waits goes to idle workers first."""
        ...

    async def prepare(self, task: ClaimedTask) -> tuple[Path, Path]:
        """``(input_dir, output_dir)`` of the task, ready for the executor: its inputs in place, the output folder
        empty."""
        ...

    async def start(self, task: ClaimedTask) -> LeaseState:
        """The executor starts the task now: until this it shows ``claimed``, from now ``running``, and its run is
        timed from now. ``LeaseLost`` when the task is no longer this worker's (it was cancelled while it waited):
        the worker then drops it without running it."""
        ...

    async def preview(self, task: ClaimedTask, node_id: str, image: bytes) -> None:
        """Show ``image`` (JPEG) as the running node's preview to whoever follows the task; best effort."""
        ...

    async def heartbeat(self, task: ClaimedTask, progress: float | None, current_node: str | None) -> LeaseState:
        """Extend the lease (and, with ``progress``, store progress 0..100 and the running node)."""
        ...

    async def finish(self, task: ClaimedTask, timings: dict[str, float],
                     outputs: list[tuple[str, str | None]], *, peak_vram_bytes: int | None = None,
                     temps: Sequence[tuple[str, str | None]] = ()) -> None:
        """The run succeeded: store ``outputs`` (``(name, node_id)`` of files in the output dir), ``temps`` (those
        of the run's temporary folder, ``outputs.run_temp_dir``: stored as files of kind ``temp``), the timings and
        the run's GPU memory peak (None: not measured, a CPU device)."""
        ...

    async def fail(self, task: ClaimedTask, *, node_id: str | None, class_type: str | None, message: str,
                   traceback: str | None, peak_vram_bytes: int | None = None) -> None:
        """The run failed: the failing node (if any), its class, the message, the traceback and the GPU memory
        peak when it is known."""
        ...

    async def cancelled(self, task: ClaimedTask) -> None:
        """The run stopped because its cancel was requested."""
        ...

    async def release(self, task: ClaimedTask) -> None:
        """Give the task back unrun (``pending`` again; ``cancelled`` when a cancel was requested meanwhile)."""
        ...

    async def report(self, record: WorkerRecord) -> list[str] | None:
        """Store the worker's report; the flows an admin lets it take (None: all it has installed)."""
        ...

    async def take_commands(self, worker_id: str) -> list[dict[str, Any]]:
        """The commands an admin queued for this worker (install models, free memory), each handed out once."""
        ...

    async def cleanup(self, task: ClaimedTask) -> None:
        """Remove the task's local temporary files (the HTTP source's copies); nothing for the database source."""
        ...

    async def close(self) -> None:
        """Let go of connections and listeners."""
        ...
