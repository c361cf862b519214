"""Failed sign-ins, counted per client address and per user name over a sliding window: past the limit, further
attempts are refused with 429 and ``Retry-After`` until the window has moved on (``docs/security.md``)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable


class FailureLimiter:
    """``per_address`` and ``per_user`` failures within ``window_s`` seconds; the clock is injectable for tests."""

    MAX_KEYS = 100_000
    """Beyond this many tracked keys the oldest are forgotten (a flood of addresses must not grow memory)."""

    def __init__(self, *, per_address: int = 20, per_user: int = 10, window_s: float = 300.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_address = per_address
        self.per_user = per_user
        self.window_s = window_s
        self.clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float]:
        now = self.clock()
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def retry_after(self, address: str, user: str | None) -> float | None:
        """Seconds until another attempt is allowed; None when it is allowed now."""
        waits = []
        for key, limit in ((f"a:{address}", self.per_address), (f"u:{user}", self.per_user)):
            if key == "u:None":
                continue
            failures = self._recent(key)
            if len(failures) >= limit:
                waits.append(failures[0] + self.window_s - self.clock())
        return max(1.0, max(waits)) if waits else None

    def failed(self, address: str, user: str | None) -> None:
        now = self.clock()
        keys = [f"a:{address}"] + ([f"u:{user}"] if user else [])
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)
        while len(self._failures) > self.MAX_KEYS:
            del self._failures[next(iter(self._failures))]

    def succeeded(self, user: str) -> None:
        self._failures.pop(f"u:{user}", None)
