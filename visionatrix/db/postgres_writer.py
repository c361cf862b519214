"""``PostgresWriter``: the hot writes of one engine on PostgreSQL, over a few held connections, committed in groups.

Every write in autocommit is a transaction of its own: a pool checkout, a round trip and a WAL flush. Here callers
hand over ``(sql, args)`` and await a future. The writer has up to ``connections`` lanes; each lane is one asyncio
task holding one pooled connection while it has work:

- a write goes to the lane with the least work (a group running counts as one), among equals one that holds its
  connection already; so one caller keeps reusing one connection, and concurrent callers spread over the lanes,
  whose round trips then overlap;
- a lane runs what waits for it: one write alone as one ``fetch`` in autocommit; several in ONE transaction, in
  the order they arrived (a second claim sees the first one's row as taken), sharing one commit;
- a statement that fails rolls its group back and each write of it is run again alone, so one bad write fails
  only its own caller, and nothing is committed twice;
- after a group the lane yields once (the callers it woke usually hand over their next write at once) and gives
  its connection back to the pool when nothing waits; a connection error invalidates the connection (the pool
  never keeps one in an unknown state) and fails the writes of that group with the error (a write that may have
  reached the server is never sent twice); a connection the server closed before a group is replaced first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from visionatrix.db.sqlite_writer import settle


@dataclass(slots=True)
class _Write:
    sql: str
    args: Sequence[Any]
    future: asyncio.Future[list[Any]]


Outcome = tuple[list[Any] | None, BaseException | None]


@dataclass(eq=False)
class _Lane:
    waiting: list[_Write] = field(default_factory=list)
    runner: asyncio.Task[None] | None = None
    busy: bool = False
    """Running a group now (writes handed to it wait for the next group)."""


class PostgresWriter:
    """Group-committing writer over ``engine`` (``postgresql+asyncpg``), on at most ``connections`` connections."""

    def __init__(self, engine: AsyncEngine, *, max_batch: int = 256, connections: int = 4) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError(f"PostgresWriter needs PostgreSQL, not {engine.dialect.name}")
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self.engine = engine
        self.max_batch = max_batch
        self._lanes = [_Lane() for _ in range(connections)]
        self.batches = 0
        """Transactions (or single autocommit writes) run so far."""

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Run ``sql`` with ``args`` as part of a committed transaction; the rows it returned (asyncpg records)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        lane = self._pick()
        lane.waiting.append(_Write(sql, args, future))
        if lane.runner is None:
            lane.runner = loop.create_task(self._drain(lane), name="vix-postgres-writer")
        return await future

    def _pick(self) -> _Lane:
        return min(self._lanes, key=lambda lane: (len(lane.waiting) + lane.busy, lane.runner is None))

    async def _drain(self, lane: _Lane) -> None:
        try:
            # Checked again after the connection went back to the pool: writes handed over during that await
            # would otherwise wait for a runner that is finishing.
            while lane.waiting:
                try:
                    await self._hold_connection(lane)
                except BaseException as exc:  # no connection: the writes still waiting fail with the reason
                    batch, lane.waiting = lane.waiting, []
                    _settle(batch, [(None, exc)] * len(batch))
                    if not isinstance(exc, Exception):
                        raise
        finally:
            lane.runner = None
            lane.busy = False

    async def _hold_connection(self, lane: _Lane) -> None:
        async with self.engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            while lane.waiting:
                if driver.is_closed():  # the server dropped it while it sat in the pool or between groups:
                    await conn.invalidate()  # nothing was sent on it, so the writes go on a new one
                    return
                batch = lane.waiting[:self.max_batch]
                del lane.waiting[:self.max_batch]
                lane.busy = True
                try:
                    outcomes = await self._run(driver, batch)
                except BaseException as exc:  # the connection broke (or this task was cancelled)
                    _settle(batch, [(None, exc)] * len(batch))
                    await conn.invalidate()
                    if not isinstance(exc, Exception):
                        raise
                    return  # only this batch fails: writes queued meanwhile go on a new connection
                finally:
                    lane.busy = False
                _settle(batch, outcomes)
                await asyncio.sleep(0)

    async def _run(self, driver: Any, batch: list[_Write]) -> list[Outcome]:
        self.batches += 1
        if len(batch) == 1:
            return [await _alone(driver, batch[0])]
        results = []
        try:
            async with driver.transaction():
                for job in batch:
                    results.append(await driver.fetch(job.sql, *job.args))
        except Exception as exc:
            if _connection_lost(driver, exc):
                raise
            return [await _alone(driver, job) for job in batch]
        return [(rows, None) for rows in results]


async def _alone(driver: Any, job: _Write) -> Outcome:
    try:
        return (await driver.fetch(job.sql, *job.args), None)
    except Exception as exc:
        if _connection_lost(driver, exc):
            raise
        return (None, exc)


def _connection_lost(driver: Any, exc: Exception) -> bool:
    """Whether the connection is unusable after ``exc``: closed, or the server ended the session (it may still look
    open for a moment: the goodbye arrives before the socket closes). asyncpg is imported here, not at import time
    (importing ``db`` loads no driver)."""
    import asyncpg

    gone = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, asyncpg.exceptions.AdminShutdownError,
            asyncpg.exceptions.CrashShutdownError, asyncpg.exceptions.CannotConnectNowError)
    return driver.is_closed() or isinstance(exc, gone)


def _settle(batch: list[_Write], outcomes: list[Outcome]) -> None:
    for job, (rows, exc) in zip(batch, outcomes, strict=True):
        settle(job.future, rows, exc)
