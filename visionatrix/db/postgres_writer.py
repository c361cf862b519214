"""``PostgresWriter``: the hot writes of one engine on PostgreSQL, on a few connections it holds.

Each write is one statement in autocommit (one round trip). What this saves is round trips and the client's CPU,
which on a small machine are the limit of a busy server:

- no pool checkout per write: the writer holds up to ``connections`` connections of the engine's pool, and a write
  runs on a free one *in the caller's own task* (no hand-over to another task, no extra event-loop turn); the most
  recently used connection is taken first, so one caller keeps one connection and its prepared statements;
- when all are busy, writes queue in arrival order, and a freed connection serves the queue: the first write
  together with every queued write that can merge with it (same ``Merge.key``: concurrent claims of the same
  flows, concurrent finishes) as ONE statement — one round trip and one commit for the lot. A lone write never
  waits for company: merging only happens to writes that had to wait anyway;
- a connection idle for ``idle_s`` goes back to the pool (``aclose()`` gives every one back at once; disposing of
  the engine closes the idle ones).

Failures: a statement error fails only its caller and the connection is reused; a merged statement that fails runs
its writes again one by one (in autocommit a failed statement changed nothing), so one bad write fails alone. A
connection the server closed while it was idle is replaced before anything is sent on it. One that breaks during a
write (or whose caller is cancelled while the statement runs) is invalidated, so the pool never keeps a connection
in an unknown state, and the writes on it fail with the error — they may or may not have reached the server, and
they are never sent twice. A session the server ended (admin shutdown, crash) counts as broken even while asyncpg
still shows the socket open. A caller cancelled while its write waits in the queue takes it back; one cancelled
after its queued write was sent does not (a claim made for it expires with its lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import Callable, Coroutine, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from visionatrix.db.sqlite_writer import settle

log = logging.getLogger(__name__)
_SETTING = re.compile(r"[A-Za-z0-9_.]+")
"""A setting's name or value in ``session``: written into the SQL, so plain words only."""

Outcome = tuple[list[Any] | None, BaseException | None]


@dataclass(frozen=True, slots=True)
class Merge:
    """How queued writes of one kind run as one statement. ``key``: writes with equal keys merge; ``build``: the
    merged statement's SQL and arguments from the writes' arguments (in queue order); ``split``: each write's rows
    (as its own statement would have returned them) from the merged statement's rows."""

    key: Hashable
    build: Callable[[list[Sequence[Any]]], tuple[str, Sequence[Any]]]
    split: Callable[[list[Sequence[Any]], list[Any]], list[list[Any]]]


@dataclass(eq=False, slots=True)
class _Held:
    conn: AsyncConnection
    driver: Any
    """The asyncpg connection under ``conn``."""
    idle_since: float = 0.0


@dataclass(eq=False, slots=True)
class _Queued:
    sql: str
    args: Sequence[Any]
    merge: Merge | None
    future: asyncio.Future[list[Any]]


class PostgresWriter:
    """Autocommit writes over ``engine`` (``postgresql+asyncpg``) on at most ``connections`` held connections; at
    most ``max_merge`` queued writes in one merged statement."""

    def __init__(self, engine: AsyncEngine, *, connections: int = 4, idle_s: float = 0.5,
                 max_merge: int = 64, session: Mapping[str, str] | None = None) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError(f"PostgresWriter needs PostgreSQL, not {engine.dialect.name}")
        if connections < 1:
            raise ValueError("connections must be at least 1")
        if idle_s <= 0:
            raise ValueError("idle_s must be positive")
        if max_merge < 1:
            raise ValueError("max_merge must be at least 1")
        self.engine = engine
        self.connections = connections
        self.idle_s = idle_s
        self.max_merge = max_merge
        self.session = dict(session or {})
        """Planner settings (``SET name = value``) for the writer's statements: set when a connection is taken from
        the pool, reset before it goes back (the pool itself only rolls back)."""
        for name, value in self.session.items():
            if not (_SETTING.fullmatch(name) and _SETTING.fullmatch(value)):
                raise ValueError(f"not a setting: {name!r} = {value!r}")
        self._free: list[_Held] = []
        self._held = 0
        """Connections held now: free, in use, or being opened."""
        self._queue: deque[_Queued] = deque()
        self._trim_timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()
        """Connections being given back, or serving the queue."""
        self._closed = False
        self.statements = 0
        """Statements sent so far (a merged statement counts once)."""
        self.merged = 0
        """Writes that went in a merged statement."""
        self.opened = 0
        """Connections taken from the pool so far."""
        event.listen(engine.sync_engine, "engine_disposed", self._engine_disposed)

    @property
    def held(self) -> int:
        return self._held

    async def execute(self, sql: str, args: Sequence[Any] = (), *, merge: Merge | None = None) -> list[Any]:
        """Run ``sql`` with ``args`` as one committed statement; the rows it returned (asyncpg records). ``merge``:
        how it may run together with other queued writes when it has to wait for a connection."""
        held = await self._take()
        if held is None:
            return await self._enqueue(sql, args, merge)
        try:
            rows, error = await self._alone(held.driver, sql, args)
        except Exception:  # the connection broke
            await self._discard(held)
            raise
        except BaseException:  # cancelled mid-statement: the connection's state is unknown
            await asyncio.shield(self._discard(held))
            raise
        self._give_back(held)
        if error is not None:
            raise error
        assert rows is not None
        return rows

    async def aclose(self) -> None:
        """Give every held connection back to the pool; ones in use go back when their write ends."""
        self._closed = True
        if event.contains(self.engine.sync_engine, "engine_disposed", self._engine_disposed):
            event.remove(self.engine.sync_engine, "engine_disposed", self._engine_disposed)
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

    # -- connections ---------------------------------------------------------------------------------------------

    async def _take(self) -> _Held | None:
        """A free connection, or a new one while fewer than ``connections`` are held; None: all are busy."""
        while True:
            if self._free:
                held = self._free.pop()
            elif self._held < self.connections and not self._queue:
                held = await self._open()
            else:
                return None
            if not held.driver.is_closed():
                return held
            await self._discard(held)  # the server dropped it while it was idle: nothing was sent on it

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
            raise
        held = _Held(conn, raw.driver_connection)
        if self.session:
            try:
                await held.driver.execute("; ".join(f"SET {name} = {value}" for name, value in self.session.items()))
            except BaseException:  # also when cancelled: the connection's state is unknown
                await asyncio.shield(self._discard(held))
                raise
        self.opened += 1
        return held

    def _give_back(self, held: _Held) -> None:
        if self._queue:
            self._spawn(self._serve(held))
            return
        if self._closed:
            self._spawn(self._close(held))
            return
        loop = asyncio.get_running_loop()
        held.idle_since = loop.time()
        self._free.append(held)
        if self._trim_timer is None:
            self._trim_timer = loop.call_later(self.idle_s, self._trim)

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
        await self._let_go(held, broken=False)

    async def _discard(self, held: _Held) -> None:
        """Close a broken connection at once and invalidate it (the pool opens a new one later)."""
        await self._let_go(held, broken=True)

    async def _let_go(self, held: _Held, *, broken: bool) -> None:
        """The connection leaves the writer; a slot is free for the writes that wait."""
        try:
            if not broken and self.session:
                try:
                    await held.driver.execute("; ".join(f"RESET {name}" for name in self.session))
                except Exception:  # the pool must not get it with our settings: drop it instead
                    broken = True
            if broken:
                held.driver.terminate()  # no graceful goodbye on a connection in an unknown state
                await held.conn.invalidate()
            await held.conn.close()
        except Exception:
            log.warning("a PostgreSQL writer connection failed to %s", "invalidate" if broken else "close",
                        exc_info=True)
        finally:
            self._held -= 1
            self._serve_in_new_connection()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work, name="vix-postgres-writer")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- the queue -----------------------------------------------------------------------------------------------

    async def _enqueue(self, sql: str, args: Sequence[Any], merge: Merge | None) -> list[Any]:
        job = _Queued(sql, args, merge, asyncio.get_running_loop().create_future())
        self._queue.append(job)
        if self._held < self.connections:  # a slot is free (every connection was busy opening or closing)
            self._serve_in_new_connection()
        try:
            return await job.future
        except asyncio.CancelledError:
            with contextlib.suppress(ValueError):
                self._queue.remove(job)  # not sent yet: taken back
            raise

    def _serve_in_new_connection(self) -> None:
        """A slot is free and writes wait: open a connection for them."""
        if self._queue and self._held < self.connections:
            self._held += 1  # reserved now, so two calls never open one slot twice
            self._spawn(self._open_and_serve())

    async def _open_and_serve(self) -> None:
        self._held -= 1  # the reservation; _open counts the connection again
        try:
            held = await self._open()
        except Exception as exc:  # no connection: the writes that would have run on it fail with the reason
            jobs = self._next_jobs()
            _settle(jobs, [(None, exc)] * len(jobs))
            self._serve_in_new_connection()
            return
        await self._serve(held)

    def _next_jobs(self) -> list[_Queued]:
        """The first queued write still wanted, with the queued writes that merge with it (queue order)."""
        while self._queue and self._queue[0].future.done():
            self._queue.popleft()
        if not self._queue:
            return []
        first = self._queue.popleft()
        if first.merge is None:
            return [first]
        jobs: list[_Queued] = [first]
        kept: deque[_Queued] = deque()
        while self._queue:
            job = self._queue.popleft()
            if job.future.done():
                continue
            if len(jobs) < self.max_merge and job.merge is not None and job.merge.key == first.merge.key:
                jobs.append(job)
            else:
                kept.append(job)
        self._queue = kept
        return jobs

    async def _serve(self, held: _Held) -> None:
        """Run the queued writes on ``held`` until none is left, then give it back."""
        while True:
            if held.driver.is_closed():
                await self._discard(held)
                return
            jobs = self._next_jobs()
            if not jobs:
                break
            try:
                outcomes = await self._run(held.driver, jobs)
            except BaseException as exc:  # the connection broke (or this task was cancelled at shutdown)
                _settle(jobs, [(None, exc)] * len(jobs))
                await self._discard(held)
                if not isinstance(exc, Exception):
                    raise
                return
            _settle(jobs, outcomes)
        self._give_back(held)

    async def _run(self, driver: Any, jobs: list[_Queued]) -> list[Outcome]:
        if len(jobs) == 1:
            return [await self._alone(driver, jobs[0].sql, jobs[0].args)]
        merge = jobs[0].merge
        assert merge is not None
        arguments = [job.args for job in jobs]
        sql, args = merge.build(arguments)
        try:
            rows = await driver.fetch(sql, *args)
        except Exception as exc:
            if _connection_lost(driver, exc):
                raise
            return [await self._alone(driver, job.sql, job.args) for job in jobs]  # nothing was committed: one by one
        self.statements += 1
        self.merged += len(jobs)
        return [(own, None) for own in merge.split(arguments, rows)]

    async def _alone(self, driver: Any, sql: str, args: Sequence[Any]) -> Outcome:
        """One statement on ``driver``: its rows, or the error it raised; raises when the connection broke."""
        try:
            rows = await driver.fetch(sql, *args)
        except Exception as exc:
            if _connection_lost(driver, exc):
                raise
            return (None, exc)
        self.statements += 1
        return (rows, None)


def _settle(jobs: list[_Queued], outcomes: list[Outcome]) -> None:
    for job, (rows, exc) in zip(jobs, outcomes, strict=True):
        settle(job.future, rows, exc)


def _connection_lost(driver: Any, exc: Exception) -> bool:
    """Whether the connection is unusable after ``exc``: closed, or the server ended the session (it may still look
    open for a moment: the goodbye arrives before the socket closes). asyncpg is imported here, not at import time
    (importing ``db`` loads no driver)."""
    import asyncpg

    gone = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError, asyncpg.exceptions.AdminShutdownError,
            asyncpg.exceptions.CrashShutdownError, asyncpg.exceptions.CannotConnectNowError)
    return driver.is_closed() or isinstance(exc, gone)
