"""``PostgresWriter``: the hot single-statement writes of one engine on PostgreSQL, on a few connections it holds.

Each write is one statement in autocommit (one round trip; PostgreSQL commits concurrent backends' WAL together by
itself). What this saves is the client's CPU, which on a small machine is the limit of a busy server:

- no pool checkout per write: the writer holds up to ``connections`` connections of the engine's pool, and a write
  runs on a free one *in the caller's own task* (no hand-over to another task, no extra event-loop turn); the most
  recently used connection is taken first, so one caller keeps one connection and its prepared statements;
- when all are busy, callers wait in arrival order and each freed connection goes straight to the next one;
- a connection idle for ``idle_s`` goes back to the pool (``aclose()`` gives every one back at once; disposing of
  the engine closes the idle ones).

Failures: a statement error fails only its caller and the connection is reused. A connection the server closed
while it was idle is replaced before anything is sent on it. One that breaks during a write (or whose caller is
cancelled while the statement runs) is invalidated, so the pool never keeps a connection in an unknown state, and
that write fails with the error — it may or may not have reached the server, and it is never sent twice. A session
the server ended (admin shutdown, crash) counts as broken even while asyncpg still shows the socket open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class _Held:
    conn: AsyncConnection
    driver: Any
    """The asyncpg connection under ``conn``."""
    idle_since: float = 0.0


class PostgresWriter:
    """Autocommit writes over ``engine`` (``postgresql+asyncpg``) on at most ``connections`` held connections."""

    def __init__(self, engine: AsyncEngine, *, connections: int = 8, idle_s: float = 0.5) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError(f"PostgresWriter needs PostgreSQL, not {engine.dialect.name}")
        if connections < 1:
            raise ValueError("connections must be at least 1")
        if idle_s <= 0:
            raise ValueError("idle_s must be positive")
        self.engine = engine
        self.connections = connections
        self.idle_s = idle_s
        self._free: list[_Held] = []
        self._held = 0
        """Connections held now: free, in use, or being opened."""
        self._waiting: deque[asyncio.Future[_Held]] = deque()
        self._trim_timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()
        """Connections being given back or opened for a waiting caller."""
        self._closed = False
        self.writes = 0
        """Statements run so far."""
        self.opened = 0
        """Connections taken from the pool so far."""
        event.listen(engine.sync_engine, "engine_disposed", self._engine_disposed)

    @property
    def held(self) -> int:
        return self._held

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """Run ``sql`` with ``args`` as one committed statement; the rows it returned (asyncpg records)."""
        held = await self._take()
        try:
            rows: list[Any] = await held.driver.fetch(sql, *args)
        except Exception as exc:
            if not _connection_lost(held.driver, exc):
                self._give_back(held)
                raise
            await self._discard(held)
            raise
        except BaseException:  # cancelled mid-statement: the connection's state is unknown
            await asyncio.shield(self._discard(held))
            raise
        self.writes += 1
        self._give_back(held)
        return rows

    async def aclose(self) -> None:
        """Give every held connection back to the pool; ones in use go back when their write ends."""
        self._closed = True
        if self._trim_timer is not None:
            self._trim_timer.cancel()
            self._trim_timer = None
        free, self._free = self._free, []
        for held in free:
            await self._close(held)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def _engine_disposed(self, _engine: Engine) -> None:
        """The engine's owner disposed of it without ``aclose()`` first: close the idle connections now (inside
        ``dispose``) rather than leave them to the garbage collector, which may run them down on another loop."""
        free, self._free = self._free, []
        for held in free:
            held.driver.terminate()
            try:
                held.conn.sync_connection.invalidate()  # type: ignore[union-attr]
                held.conn.sync_connection.close()  # type: ignore[union-attr]
            except Exception:
                log.debug("dropping a PostgreSQL writer connection at dispose failed", exc_info=True)
            self._held -= 1

    # -- taking and giving back ----------------------------------------------------------------------------------

    async def _take(self) -> _Held:
        while True:
            held = await self._candidate()
            if not held.driver.is_closed():
                return held
            await self._discard(held)  # the server dropped it while it was idle: nothing was sent on it

    async def _candidate(self) -> _Held:
        """A free connection, a new one while fewer than ``connections`` are held, else the next one freed."""
        if self._free:
            return self._free.pop()
        if self._held < self.connections:
            return await self._open()
        future: asyncio.Future[_Held] = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():  # handed over just as the caller was cancelled
                self._give_back(future.result())
            else:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(future)
            raise

    async def _open(self) -> _Held:
        self._held += 1
        conn = self.engine.connect()
        try:
            await conn.start()
            raw = await conn.get_raw_connection()
        except BaseException:
            self._held -= 1
            with contextlib.suppress(Exception):
                await conn.close()
            self._wake_opener()
            raise
        self.opened += 1
        return _Held(conn, raw.driver_connection)

    def _give_back(self, held: _Held) -> None:
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_result(held)
                return
        if self._closed:
            self._spawn(self._close(held))
            return
        held.idle_since = asyncio.get_running_loop().time()
        self._free.append(held)
        if self._trim_timer is None:
            self._trim_timer = asyncio.get_running_loop().call_later(self.idle_s, self._trim)

    def _trim(self) -> None:
        """Give back the connections idle for ``idle_s``; look again later while any stays free."""
        self._trim_timer = None
        loop = asyncio.get_running_loop()
        limit = loop.time() - self.idle_s
        stale = [held for held in self._free if held.idle_since <= limit]
        if stale:
            self._free = [held for held in self._free if held.idle_since > limit]
            for held in stale:
                self._spawn(self._close(held))
        if self._free:
            oldest = min(held.idle_since for held in self._free)
            self._trim_timer = loop.call_at(oldest + self.idle_s, self._trim)

    async def _close(self, held: _Held) -> None:
        """Back to the pool (the pool resets it)."""
        try:
            await held.conn.close()
        except Exception:
            log.warning("a PostgreSQL writer connection failed to close", exc_info=True)
        finally:
            self._held -= 1
            self._wake_opener()

    async def _discard(self, held: _Held) -> None:
        """Close a broken connection at once and invalidate it (the pool opens a new one later)."""
        try:
            held.driver.terminate()  # no graceful goodbye on a connection in an unknown state
            await held.conn.invalidate()
            await held.conn.close()
        except Exception:
            log.debug("invalidating a broken PostgreSQL connection failed", exc_info=True)
        finally:
            self._held -= 1
            self._wake_opener()

    def _wake_opener(self) -> None:
        """A slot was freed: the first caller still waiting opens a connection of its own in it."""
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                self._spawn(self._open_for(future))
                return

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work, name="vix-postgres-writer")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _open_for(self, future: asyncio.Future[_Held]) -> None:
        try:
            held = await self._open()
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if future.done():  # its caller went away meanwhile
            self._give_back(held)
        else:
            future.set_result(held)


def _connection_lost(driver: Any, exc: Exception) -> bool:
    """Whether the connection is unusable after ``exc``: closed, or the server ended the session (it may still look
    open for a moment: the goodbye arrives before the socket closes). asyncpg is imported here, not at import time
    (importing ``db`` loads no driver)."""
    import asyncpg

    gone = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, asyncpg.exceptions.AdminShutdownError,
            asyncpg.exceptions.CrashShutdownError, asyncpg.exceptions.CannotConnectNowError)
    return driver.is_closed() or isinstance(exc, gone)
