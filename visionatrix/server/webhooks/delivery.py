"""``Deliverer``: sends webhooks in the background, never blocking whoever submits one.

``submit`` only starts a task (at most ``max_pending`` deliveries wait or retry at once; past that a delivery is
dropped and logged) and at most ``max_connections`` requests are in flight. Each delivery tries ``attempts`` times,
waiting ``backoff_s``, then twice as long each time (1, 2, 4, 8 s by default): a 2xx answer ends it; a 3xx (a
redirect is never followed), a 4xx other than 408 and 429, or a refused address gives up at once; anything else
(5xx, 408, 429, a timeout, a connection error) is tried again. Failures are logged with the task, URL host and
reason, never the headers. Deliveries still waiting when the server stops are lost (logged).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from dataclasses import dataclass, field

import aiohttp
from yarl import URL

from visionatrix.server.webhooks import signing, targets

log = logging.getLogger(__name__)

ATTEMPTS = 5
BACKOFF_S = 1.0
TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
MAX_PENDING = 1000
MAX_CONNECTIONS = 8
OUTCOMES_KEPT = 200
RETRIED_4XX = frozenset({408, 429})


@dataclass
class Delivery:
    task_id: int
    event: str
    url: str
    headers: dict[str, str]
    body: bytes
    delivery_id: str


@dataclass
class Outcome:
    """How a delivery ended: ``delivered``, or why it did not (``reason``), after how many ``attempts``."""

    delivery_id: str
    task_id: int
    event: str
    delivered: bool
    attempts: int
    reason: str | None = None


class _GiveUp(Exception):
    pass


@dataclass
class Deliverer:
    secret: str
    allow_hosts: tuple[str, ...] = ()
    attempts: int = ATTEMPTS
    backoff_s: float = BACKOFF_S
    timeout_s: float = TIMEOUT_S
    max_pending: int = MAX_PENDING
    max_connections: int = MAX_CONNECTIONS
    outcomes: collections.deque[Outcome] = field(default_factory=lambda: collections.deque(maxlen=OUTCOMES_KEPT))
    """The latest deliveries' outcomes, newest last (for tests and diagnostics)."""

    def __post_init__(self) -> None:
        self._active: set[asyncio.Task[None]] = set()
        self._sending = asyncio.Semaphore(self.max_connections)

    def submit(self, delivery: Delivery) -> bool:
        """Start delivering in the background; False when ``max_pending`` deliveries are already under way."""
        if len(self._active) >= self.max_pending:
            log.warning("webhook of task %d (%s) dropped: %d deliveries are already waiting", delivery.task_id,
                        delivery.event, len(self._active))
            self.outcomes.append(Outcome(delivery.delivery_id, delivery.task_id, delivery.event, False, 0,
                                         "too many deliveries waiting"))
            return False
        job = asyncio.create_task(self._deliver(delivery))
        self._active.add(job)
        job.add_done_callback(self._active.discard)
        return True

    async def drain(self) -> None:
        """Wait until every submitted delivery has ended (tests)."""
        while self._active:
            await asyncio.gather(*list(self._active), return_exceptions=True)

    async def stop(self) -> None:
        if self._active:
            log.warning("%d webhook deliveries abandoned at shutdown", len(self._active))
        for job in list(self._active):
            job.cancel()
        await asyncio.gather(*list(self._active), return_exceptions=True)

    async def _deliver(self, delivery: Delivery) -> None:
        host = URL(delivery.url).host or "?"
        reason = "not tried"
        for attempt in range(1, self.attempts + 1):
            try:
                async with self._sending:
                    reason = await self._post(delivery)
                if not reason:
                    self.outcomes.append(Outcome(delivery.delivery_id, delivery.task_id, delivery.event, True,
                                                 attempt))
                    return
            except _GiveUp as exc:
                reason = str(exc)
                log.warning("webhook of task %d (%s) to %s failed, not retried: %s", delivery.task_id,
                            delivery.event, host, reason)
                self.outcomes.append(Outcome(delivery.delivery_id, delivery.task_id, delivery.event, False, attempt,
                                             reason))
                return
            if attempt < self.attempts:
                log.info("webhook of task %d (%s) to %s: %s; trying again", delivery.task_id, delivery.event, host,
                         reason)
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        log.warning("webhook of task %d (%s) to %s failed %d times, last: %s", delivery.task_id, delivery.event, host,
                    self.attempts, reason)
        self.outcomes.append(Outcome(delivery.delivery_id, delivery.task_id, delivery.event, False, self.attempts,
                                     reason))

    async def _post(self, delivery: Delivery) -> str:
        """One attempt: "" when delivered, else why it may be tried again; ``_GiveUp`` when it may not."""
        url = URL(delivery.url)
        assert url.raw_host is not None and url.port is not None  # checked when the task was created
        try:
            addresses = await targets.vetted_addresses(url.raw_host, url.port, self.allow_hosts)
        except targets.WebhookRefused as exc:
            raise _GiveUp(f"refused: {exc}") from None
        timestamp = int(time.time())
        headers = {**delivery.headers, "Content-Type": "application/json", "X-Visionatrix-Timestamp": str(timestamp),
                   "X-Visionatrix-Signature": signing.signature(self.secret, timestamp, delivery.body),
                   "X-Visionatrix-Delivery": delivery.delivery_id, "X-Visionatrix-Event": delivery.event}
        connector = aiohttp.TCPConnector(resolver=targets.VettedResolver(url.raw_host, addresses),
                                         use_dns_cache=False, force_close=True)
        timeout = aiohttp.ClientTimeout(total=self.timeout_s, connect=CONNECT_TIMEOUT_S)
        try:
            async with (aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as session,
                        session.post(url, data=delivery.body, headers=headers, allow_redirects=False) as response):
                status = response.status
                with contextlib.suppress(Exception):
                    await response.content.readany()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return _judge(status)


def _judge(status: int) -> str:
    if 200 <= status < 300:
        return ""
    if 300 <= status < 400:
        raise _GiveUp(f"answered {status} (redirects are not followed)")
    if 400 <= status < 500 and status not in RETRIED_4XX:
        raise _GiveUp(f"answered {status}")
    return f"answered {status}"

