"""``WakeupNotifier``: PostgreSQL's ``NOTIFY vix_tasks, '<flow>'`` sent after the commit that made a task claimable,
coalesced per flow.

A ``NOTIFY`` inside a transaction serialises that transaction's commit with every other notifying commit (the
server holds one lock over its notification queue while committing), so creates sending their own ``NOTIFY``
queued behind each other. Here the notice goes out after the commit, as its own short autocommit statement on the
queue's PostgreSQL writer. A listener needs one wake-up per burst, not one per task (a woken worker claims until
the queue is empty), so notices are coalesced per flow: the first one goes out at once; while it is on its way,
and for ``interval_s`` after it, further tasks of that flow only mark it to be sent once more at the end of that
time. An idle worker is woken by the first task at once; during a burst each flow costs at most one notice per
``interval_s`` (at a thousand creates a second, sending one per round trip had put a ``NOTIFY`` after every other
create). A notice lost to a crash between the commit and the send costs a Database-FS worker one poll interval (it
claims at least every ``VIX_POLL_MAX_S``).
"""

from __future__ import annotations

import asyncio
import logging

from visionatrix.db.postgres_writer import PostgresWriter
from visionatrix.queue.wakeups import CHANNEL

log = logging.getLogger(__name__)
NOTIFY_SQL = "SELECT pg_notify($1, $2)"


NOTICE_INTERVAL_S = 0.005
"""The shortest time between two notices of one flow."""


class WakeupNotifier:
    def __init__(self, writer: PostgresWriter, *, interval_s: float = NOTICE_INTERVAL_S) -> None:
        self.writer = writer
        self.interval_s = interval_s
        self._sending: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self.sent = 0
        """Notices sent (for tests and benchmarks)."""

    def notify(self, flow: str) -> None:
        """Wake the listeners for ``flow`` soon (never blocks; call it after the commit)."""
        if flow in self._sending:
            self._again.add(flow)
            return
        self._sending[flow] = asyncio.get_running_loop().create_task(self._send(flow), name="vix-notify")

    async def _send(self, flow: str) -> None:
        try:
            while True:
                self._again.discard(flow)
                try:
                    await self.writer.execute(NOTIFY_SQL, (CHANNEL, flow))
                    self.sent += 1
                except Exception:  # the listeners still poll; the next task of this flow notifies again
                    log.warning("could not notify the workers of a new %s task", flow, exc_info=True)
                await asyncio.sleep(self.interval_s)
                if flow not in self._again:
                    return
        finally:
            del self._sending[flow]

    async def flush(self) -> None:
        """Wait for the notices on their way (at shutdown, and in tests)."""
        while self._sending:
            await asyncio.gather(*list(self._sending.values()), return_exceptions=True)
