"""``TaskWakeups``: Database-FS workers on PostgreSQL wake when a task becomes claimable, instead of polling.

Every change that makes a task claimable (create, restart, release, requeue of an expired lease) sends
``NOTIFY vix_tasks, '<flow>'`` with its commit (``TaskQueue._notify``). A ``TaskWakeups`` holds one dedicated
connection that ``LISTEN``s on the channel; ``wait(timeout_s)`` returns True as soon as a notification arrived since
the last call (or arrives within the timeout), else False. A lost listening connection is opened again on the next
wait, and while it is down ``wait`` simply sleeps: the caller's poll still finds the tasks.

On other databases there is nothing to listen to (``supported`` is False) and ``wait`` sleeps for the timeout; the
worker then polls with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

CHANNEL = "vix_tasks"
NOTIFY = text("SELECT pg_notify(:channel, :flow)")


class TaskWakeups:
    """Notifications of claimable tasks on ``engine`` (PostgreSQL); an async context manager."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.supported = engine.dialect.name == "postgresql"
        self._event = asyncio.Event()
        self._conn: AsyncConnection | None = None
        self._driver: Any = None
        self.received = 0
        """Notifications received so far (a statistic)."""

    async def __aenter__(self) -> TaskWakeups:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def wait(self, timeout_s: float) -> bool:
        """True when a task may have become claimable since the last call (or does within ``timeout_s``)."""
        if not self.supported or not await self._listening():
            await asyncio.sleep(timeout_s)
            return False
        if not self._event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), timeout=timeout_s)
        notified = self._event.is_set()
        self._event.clear()
        return notified

    async def _listening(self) -> bool:
        """Whether the listening connection is up, opening it when it is not."""
        if self._driver is not None and not self._driver.is_closed():
            return True
        await self._drop()
        conn: AsyncConnection | None = None
        try:
            conn = await self.engine.connect()
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            await driver.add_listener(CHANNEL, self._on_notify)
        except Exception as exc:
            log.warning("cannot listen for new tasks (%s); polling until it can", exc)
            if conn is not None:
                with contextlib.suppress(Exception):
                    await conn.invalidate()
                    await conn.close()
            return False
        self._conn, self._driver = conn, driver
        self._event.set()  # anything created while nobody listened is found by the next claim
        return True

    def _on_notify(self, *_args: Any) -> None:
        self.received += 1
        self._event.set()

    async def _drop(self) -> None:
        conn, driver = self._conn, self._driver
        self._conn = self._driver = None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if driver is not None and not driver.is_closed():
                await driver.remove_listener(CHANNEL, self._on_notify)
            else:
                await conn.invalidate()
        with contextlib.suppress(Exception):
            await conn.close()

    async def close(self) -> None:
        """Stop listening and give the connection back."""
        await self._drop()
