"""``TaskWakeups``: Database-FS workers wake when a task may have become claimable, instead of polling slowly.

PostgreSQL: every change that makes a task claimable (create, restart, release, requeue of an expired lease) sends
``NOTIFY vix_tasks, '<flow>'`` right after its commit (``notifier.WakeupNotifier``, coalesced per flow). A
``TaskWakeups`` holds one dedicated connection that ``LISTEN``s on the channel; ``wait(timeout_s)`` returns True as
soon as a notification arrived since the last call (or arrives within the timeout), else False. A lost listening
connection is opened again on the next wait, and while it is down ``wait`` simply sleeps: the caller's poll still
finds the tasks.

SQLite (a file, so every worker is on the server's machine): there is nothing to listen to, but every commit
changes the database file or its write-ahead log. ``wait`` looks at their size and modification time every
``WATCH_S`` (a ``stat``, no query, no lock) and returns True when they changed — any commit, so the caller's claim
may find nothing; a claim that finds nothing writes nothing and so wakes nobody.

On other databases (MariaDB/MySQL) ``supported`` is False and ``wait`` sleeps for the timeout; the worker then
polls with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

CHANNEL = "vix_tasks"
WATCH_S = 0.02
"""How often a SQLite database's files are looked at."""


class TaskWakeups:
    """Signs of claimable tasks on ``engine`` (PostgreSQL notifications, SQLite file changes); an async context
    manager."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        database = engine.url.database or ""
        self._sqlite_file = (Path(database) if engine.dialect.name == "sqlite" and database
                             and database != ":memory:" and not database.startswith("file:") else None)
        self._seen: tuple[tuple[int, int] | None, ...] | None = None
        self.supported = engine.dialect.name == "postgresql" or self._sqlite_file is not None
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
        if self._sqlite_file is not None:
            return await self._watch(timeout_s)
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
            # A lost connection wakes the waiter too: its claim finds what the dead listener would have announced,
            # and its next wait listens again.
            driver.add_termination_listener(self._on_lost)
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

    async def _watch(self, timeout_s: float) -> bool:
        """SQLite: wait until the database or its log changed (True; the first call always says so), at most
        ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            now = self._files_state()
            if now != self._seen:
                self._seen = now
                self.received += 1
                return True
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                return False
            await asyncio.sleep(min(WATCH_S, left_s))

    def _files_state(self) -> tuple[tuple[int, int] | None, ...]:
        assert self._sqlite_file is not None
        state: list[tuple[int, int] | None] = []
        for path in (self._sqlite_file, self._sqlite_file.with_name(self._sqlite_file.name + "-wal")):
            try:
                info = os.stat(path)
                state.append((info.st_mtime_ns, info.st_size))
            except OSError:
                state.append(None)
        return tuple(state)

    def _on_notify(self, *_args: Any) -> None:
        self.received += 1
        self._event.set()

    def _on_lost(self, *_args: Any) -> None:
        self._event.set()

    async def _drop(self) -> None:
        conn, driver = self._conn, self._driver
        self._conn = self._driver = None
        if conn is None:
            return
        with contextlib.suppress(Exception):
            if driver is not None and not driver.is_closed():
                driver.remove_termination_listener(self._on_lost)
                await driver.remove_listener(CHANNEL, self._on_notify)
            else:
                await conn.invalidate()
        with contextlib.suppress(Exception):
            await conn.close()

    async def close(self) -> None:
        """Stop listening and give the connection back."""
        await self._drop()
