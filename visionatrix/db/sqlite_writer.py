"""``SQLiteWriter``: one writer thread and connection for a SQLite database file, committing concurrent writes in
groups. The queue's hot writes (claim, finish) go through one per ``TaskQueue``.

SQLite has one writer at a time. Writers on separate connections of one process only queue on its file lock, and
SQLite's own busy handler sleeps a millisecond or more per retry; every write through aiosqlite is also its own
round trip to a driver thread (several for BEGIN, the statement, its rows and COMMIT). Here the writes go to one
thread instead:

- callers hand over ``(sql, args)`` and await a future;
- the thread takes every write waiting (up to ``max_batch``), runs them in ONE ``BEGIN IMMEDIATE ... COMMIT``, in
  the order they arrived (a second claim in a batch sees the first one's row as taken), and settles all their
  futures with one wake-up of the event loop; a write alone runs as one autocommit statement;
- a statement that fails rolls the batch back and each write of it is run again alone, so one bad write fails only
  its own caller, and nothing is committed twice;
- the write lock is taken with a short back-off (from 50 µs up to 5 ms between tries, ``busy_timeout_s`` in all)
  instead of SQLite's millisecond sleeps, for the other processes writing the same file (Database-FS workers);
- the thread ends after ``idle_s`` without work and starts again with the next write, so a writer that is never
  closed leaves nothing running; ``close()`` ends it at once.

A commit here has the engine's durability: WAL journal, ``synchronous=NORMAL``.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
FIRST_BACKOFF_S = 50e-6
MAX_BACKOFF_S = 5e-3


@dataclass(slots=True)
class _Write:
    sql: str
    args: Sequence[Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[tuple[Any, ...]]]


Outcome = tuple[list[tuple[Any, ...]] | None, BaseException | None]


class SQLiteWriter:
    """The writer of the SQLite file ``path`` for this process (see the module's description)."""

    def __init__(self, path: str, *, busy_timeout_s: float = 30.0, idle_s: float = 2.0, max_batch: int = 256) -> None:
        if path in ("", ":memory:"):
            raise ValueError("an in-memory SQLite database has no file a second connection could write")
        self.path = path
        self.busy_timeout_s = busy_timeout_s
        self.idle_s = idle_s
        self.max_batch = max_batch
        self._jobs: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.batches = 0
        """Transactions committed so far (a statistic: writes per batch = writes / batches)."""

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run ``sql`` with ``args`` as part of a committed transaction; the rows it returned (raw values)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[tuple[Any, ...]]] = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"the SQLite writer of {self.path} is closed")
            self._jobs.put(_Write(sql, args, loop, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=f"vix-sqlite-writer:{self.path}",
                                                daemon=True)
                self._thread.start()
        return await future

    def close(self) -> None:
        """Stop the thread once the writes already handed over are done; later writes raise ``RuntimeError``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._jobs.put(None)
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    # -- the writer thread -------------------------------------------------------------------------------------

    def _serve(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while True:
                try:
                    job = self._jobs.get(timeout=self.idle_s)
                except queue.Empty:
                    with self._lock:
                        if self._jobs.empty():
                            self._thread = None
                            return
                    continue
                if job is None:
                    return
                batch = [job]
                while len(batch) < self.max_batch:
                    try:
                        more = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        self._jobs.put(None)  # after this batch
                        break
                    batch.append(more)
                try:
                    if connection is None:
                        connection = self._connect()
                    outcomes = self._run(connection, batch)
                except BaseException as exc:  # cannot open the file, or the write lock never came
                    outcomes = [(None, exc)] * len(batch)
                _deliver(batch, outcomes)
        finally:
            if connection is not None:
                connection.close()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            connection.execute("PRAGMA busy_timeout=0")  # the back-off in _begin waits instead
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            connection.close()
            raise
        return connection

    def _begin(self, connection: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE`` (the write lock), retried with a short back-off while another connection holds it."""
        deadline = time.monotonic() + self.busy_timeout_s
        delay = FIRST_BACKOFF_S
        while True:
            try:
                connection.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF not in BUSY_CODES or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)

    def _run(self, connection: sqlite3.Connection, batch: list[_Write]) -> list[Outcome]:
        if len(batch) == 1:
            return [self._run_alone(connection, batch[0])]
        self._begin(connection)
        try:
            results = []
            for job in batch:
                cursor = connection.execute(job.sql, job.args)
                try:
                    results.append(cursor.fetchall())
                finally:
                    cursor.close()
            connection.execute("COMMIT")
        except Exception as exc:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            if len(batch) == 1:
                return [(None, exc)]
            return [self._run_alone(connection, job) for job in batch]
        self.batches += 1
        return [(rows, None) for rows in results]

    def _run_alone(self, connection: sqlite3.Connection, job: _Write) -> Outcome:
        """One write as its own statement-level transaction (autocommit: no BEGIN and COMMIT calls), retried
        with the back-off while another connection holds the write lock; a busy statement changed nothing."""
        deadline = time.monotonic() + self.busy_timeout_s
        delay = FIRST_BACKOFF_S
        while True:
            try:
                cursor = connection.execute(job.sql, job.args)
                try:
                    rows = cursor.fetchall()
                finally:
                    cursor.close()
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF not in BUSY_CODES or time.monotonic() >= deadline:
                    return (None, exc)
            except Exception as exc:
                return (None, exc)
            else:
                self.batches += 1
                return (rows, None)
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_S)


def _deliver(batch: list[_Write], outcomes: list[Outcome]) -> None:
    """Settle the futures: one call into each event loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Write, Outcome]]] = {}
    for job, outcome in zip(batch, outcomes, strict=True):
        by_loop.setdefault(job.loop, []).append((job, outcome))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[_Write, Outcome]]) -> None:
    for job, (rows, exc) in settled:
        settle(job.future, rows, exc)


def settle(future: asyncio.Future[Any], rows: list[Any] | None, exc: BaseException | None) -> None:
    """Hand a write's outcome to its caller (shared with ``postgres_writer``). A caller that was cancelled is
    skipped: its write stands (or failed) all the same."""
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(rows if rows is not None else [])
