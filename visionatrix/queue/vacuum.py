"""``TableVacuum``: on PostgreSQL the queue vacuums ``tasks`` itself, every few thousand claims.

A claim turns a task's row from ``pending`` into ``running``. ``status`` is indexed, so that update is never HOT:
the row's old version keeps its entry in ``ix_tasks_claim_flow`` until a VACUUM removes it. Every later claim probes
its flow's pending entries from the front, over all those dead ones: the first scan to reach one marks it killed,
so later scans skip its heap row, but they still read every index page it sits on. After 50,000 claims a claim read
about 300 index pages where it had read 6, and a deep backlog drained ever slower (``docs/queue.md``, "Depth").
Autovacuum does not keep up with that: by default it waits until a fifth of the table has changed, and a server may
run with it off.

So the queue counts its claims and, after ``every`` of them, runs ``VACUUM_SQL`` in the background, on a connection
of its own in autocommit (VACUUM cannot run in a transaction), while claims go on. At most one runs per process;
``SKIP_LOCKED`` skips the table while autovacuum or another process is vacuuming it; ``INDEX_CLEANUP ON`` because
the index entries are the point (by default VACUUM may skip the index pass when few heap pages changed);
``TRUNCATE false`` because truncating the table's empty tail takes a lock that stalls the claims. On a large table
VACUUM costs more (it reads every index of ``tasks`` whole), so the next one waits at least ``pause_ratio`` times as
long as the last one took: the queue spends at most about ``1 / (1 + pause_ratio)`` of one connection on it. A
failed VACUUM is logged; the next one is tried ``every`` claims later (and after the pause). A role that does not own
the table only gets a warning from the server, and nothing is vacuumed.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)
VACUUM_SQL = "VACUUM (SKIP_LOCKED, INDEX_CLEANUP ON, TRUNCATE false) tasks"
DEFAULT_EVERY = 2_000
"""Claims between two vacuums: the pages a claim walks stay about those of a 2,000-task backlog."""


class TableVacuum:
    def __init__(self, engine: AsyncEngine, *, every: int = DEFAULT_EVERY, pause_ratio: float = 9.0) -> None:
        if every < 1:
            raise ValueError("every must be at least 1")
        self.engine = engine
        self.every = every
        self.pause_ratio = pause_ratio
        self.claims = 0
        """Claims since the last vacuum started."""
        self.runs = 0
        """Vacuums that completed (for tests and benchmarks)."""
        self.last_s = 0.0
        """How long the last vacuum took."""
        self._not_before = 0.0
        self._running: asyncio.Task[None] | None = None

    def claimed(self) -> None:
        """Count one claim; start a vacuum when it is due (never blocks the caller)."""
        self.claims += 1
        if self.claims < self.every or self._running is not None or time.monotonic() < self._not_before:
            return
        self.claims = 0
        self._running = asyncio.get_running_loop().create_task(self._vacuum(), name="vix-vacuum")

    async def _vacuum(self) -> None:
        started = time.monotonic()
        try:
            async with self.engine.connect() as conn:
                autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.execute(text(VACUUM_SQL))
            self.runs += 1
        except Exception:  # claims work without it, only slower at depth
            log.warning("could not vacuum the tasks table", exc_info=True)
        finally:
            self.last_s = time.monotonic() - started
            self._not_before = time.monotonic() + self.pause_ratio * self.last_s
            self._running = None

    async def aclose(self) -> None:
        """Let a running vacuum end (it is short, and cancelling it would waste the work done)."""
        running = self._running
        if running is not None:
            await asyncio.shield(running)
