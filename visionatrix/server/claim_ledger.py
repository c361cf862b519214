"""Claims by id. A worker's claim carries a ``claim_id`` it keeps across retries of that claim, so:

- a reply lost in transit is answered again when the worker retries — the same task, never a second one;
- a claim the worker gave up on (it cancelled the request) can be withdrawn: the task it was handed, if any, is
  released at once instead of staying leased to nobody until its lease runs out.

Kept in memory for ``keep_s`` (and at most ``max_entries``): a claim is retried or withdrawn within seconds. After
a server restart the ledger is empty and the lease expiry covers what it would have.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from visionatrix.queue.models import ClaimedTask

KEEP_S = 120.0
MAX_ENTRIES = 10_000


@dataclass
class ClaimEntry:
    """One claim: the task handed over (and the reply that carried it), or withdrawn."""

    task: ClaimedTask | None = None
    reply: dict[str, Any] | None = None
    withdrawn: bool = False
    at: float = field(default_factory=time.monotonic)


Key = tuple[str, str]
"""``(worker_id, claim_id)``: a claim id is only ever looked up for the worker that sent it."""


class ClaimLedger:
    def __init__(self, *, keep_s: float = KEEP_S, max_entries: int = MAX_ENTRIES) -> None:
        self.keep_s = keep_s
        self.max_entries = max_entries
        self._entries: OrderedDict[Key, ClaimEntry] = OrderedDict()

    def _prune(self) -> None:
        oldest_kept = time.monotonic() - self.keep_s
        while self._entries:
            key, entry = next(iter(self._entries.items()))
            if entry.at >= oldest_kept and len(self._entries) <= self.max_entries:
                break
            del self._entries[key]

    def open(self, key: Key) -> ClaimEntry:
        """The entry of ``key``: an earlier attempt's (handed over or withdrawn), or a new one."""
        self._prune()
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = ClaimEntry()
        return entry

    def handed(self, key: Key, task: ClaimedTask, reply: dict[str, Any]) -> None:
        entry = self.open(key)
        entry.task, entry.reply = task, reply

    def withdraw(self, key: Key) -> ClaimedTask | None:
        """Mark the claim withdrawn (a later attempt with this id gets no task); the task it was handed, which the
        caller releases."""
        entry = self.open(key)
        entry.withdrawn = True
        task, entry.task, entry.reply = entry.task, None, None
        return task

    def withdrawn(self, key: Key | None) -> bool:
        entry = self._entries.get(key) if key is not None else None
        return entry is not None and entry.withdrawn
