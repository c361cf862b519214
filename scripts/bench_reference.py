"""Same-day reference points for ``bench_queue.py``: a minimal queue on the raw drivers, no product code.

    .venv/bin/python scripts/bench_reference.py [--backends sqlite,postgresql] [--claimers 1,4,8] [--tasks 2000]
                                               [--http-tasks 1000] [--depths 2000,20000,100000]
                                               [--out bench-results/bench_reference.json]

Issue 3 set its speed goal against "a minimal harness measured on this machine kind": raw claim+finish about 4,000/s
on SQLite and 2,000-4,000/s on PostgreSQL, and about 320 (SQLite) and 650 (PostgreSQL) tasks/s end to end over HTTP
with 8 clients. Machines of that kind differ from day to day by a factor of two or more, so comparing our figures
with numbers measured on another day says little. This script is such a minimal harness, run beside
``bench_queue.py`` on the same machine and day:

- ``raw``: a table of N pending tasks drained by C claimers, each with its own connection (aiosqlite; asyncpg),
  each task one claim statement (``UPDATE … WHERE id = (SELECT … [FOR UPDATE SKIP LOCKED]) RETURNING id``) and one
  finishing ``UPDATE``, each committed; tasks per second.
- ``depth``: ``raw`` once per backlog of ``--depths`` (the reference for ``bench_queue.py``'s ``depth``).
- ``http``: a bare aiohttp app whose ``POST /tasks`` inserts a row, C clients posting while C claimers (own
  connections, 5 ms sleep when the queue is empty) take and finish them; tasks per second from the first request
  to the last finish.

No validation, no files, no events, no leases: what ours does on top of this is the product. Prints a table and
writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import aiosqlite
import asyncpg
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench-results" / "bench_reference.json"
POSTGRES_DSN = os.environ.get("VIX_BENCH_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
IDLE_S = 0.005


class Backend:
    """One scratch table on one database; ``connect()`` opens a new connection of the raw driver."""

    name: str
    table: str

    async def setup(self) -> None: ...
    async def teardown(self) -> None: ...
    async def connect(self) -> Any: ...
    async def close(self, conn: Any) -> None: ...
    async def insert(self, conn: Any, count: int) -> None: ...
    async def claim(self, conn: Any, worker: str) -> int | None: ...
    async def finish(self, conn: Any, task_id: int) -> None: ...


class Sqlite(Backend):
    name = "sqlite"

    def __init__(self) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="vix_ref_")
        self.path = Path(self.folder.name) / "ref.db"
        self.table = "ref_tasks"

    async def setup(self) -> None:
        async with aiosqlite.connect(self.path) as conn:
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute(f"CREATE TABLE {self.table} (id INTEGER PRIMARY KEY AUTOINCREMENT, flow TEXT NOT NULL,"
                               " params TEXT NOT NULL, status TEXT NOT NULL, priority INTEGER NOT NULL,"
                               " worker TEXT, created_at REAL NOT NULL)")
            await conn.execute(f"CREATE INDEX ix_ref_claim ON {self.table} (status, priority DESC, id)")
            await conn.commit()

    async def teardown(self) -> None:
        self.folder.cleanup()

    async def connect(self) -> Any:
        conn = await aiosqlite.connect(self.path)
        await conn.execute("PRAGMA busy_timeout=5000")
        await conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    async def close(self, conn: Any) -> None:
        await conn.close()

    async def insert(self, conn: Any, count: int) -> None:
        now = time.time()
        await conn.executemany(f"INSERT INTO {self.table} (flow, params, status, priority, created_at) "
                               "VALUES ('noop', '{}', 'pending', 0, ?)", [(now,)] * count)
        await conn.commit()

    async def claim(self, conn: Any, worker: str) -> int | None:
        cursor = await conn.execute(
            f"UPDATE {self.table} SET status = 'running', worker = ? WHERE status = 'pending' AND id = "
            f"(SELECT id FROM {self.table} WHERE status = 'pending' ORDER BY priority DESC, id LIMIT 1) RETURNING id",
            (worker,))
        row = await cursor.fetchone()
        await cursor.close()
        await conn.commit()
        return None if row is None else int(row[0])

    async def finish(self, conn: Any, task_id: int) -> None:
        await conn.execute(f"UPDATE {self.table} SET status = 'finished' WHERE id = ?", (task_id,))
        await conn.commit()


class Postgres(Backend):
    name = "postgresql"

    def __init__(self) -> None:
        self.table = f"ref_tasks_{secrets.token_hex(4)}"

    async def setup(self) -> None:
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            await conn.execute(f"CREATE TABLE {self.table} (id BIGSERIAL PRIMARY KEY, flow TEXT NOT NULL, params TEXT"
                               " NOT NULL, status TEXT NOT NULL, priority INTEGER NOT NULL, worker TEXT,"
                               " created_at DOUBLE PRECISION NOT NULL)")
            await conn.execute(f"CREATE INDEX ix_{self.table} ON {self.table} (status, priority DESC, id)")
        finally:
            await conn.close()

    async def teardown(self) -> None:
        conn = await asyncpg.connect(POSTGRES_DSN)
        try:
            await conn.execute(f"DROP TABLE IF EXISTS {self.table}")
        finally:
            await conn.close()

    async def connect(self) -> Any:
        return await asyncpg.connect(POSTGRES_DSN)

    async def close(self, conn: Any) -> None:
        await conn.close()

    async def insert(self, conn: Any, count: int) -> None:
        now = time.time()
        await conn.executemany(f"INSERT INTO {self.table} (flow, params, status, priority, created_at) "
                               "VALUES ('noop', '{}', 'pending', 0, $1)", [(now,)] * count)

    async def claim(self, conn: Any, worker: str) -> int | None:
        return await conn.fetchval(
            f"UPDATE {self.table} SET status = 'running', worker = $1 WHERE id = (SELECT id FROM {self.table} "
            "WHERE status = 'pending' ORDER BY priority DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id", worker)

    async def finish(self, conn: Any, task_id: int) -> None:
        await conn.execute(f"UPDATE {self.table} SET status = 'finished' WHERE id = $1", task_id)


async def _claimer(backend: Backend, name: str, wanted: int, done: list[int], stop: asyncio.Event,
                   finished_at: dict[int, float]) -> None:
    conn = await backend.connect()
    try:
        while not stop.is_set():
            task_id = await backend.claim(conn, name)
            if task_id is None:
                await asyncio.sleep(IDLE_S)
                continue
            await backend.finish(conn, task_id)
            finished_at[task_id] = time.perf_counter()
            done[0] += 1
            if done[0] >= wanted:
                stop.set()
    finally:
        await backend.close(conn)


async def scenario_raw(backend: Backend, claimers: int, tasks: int) -> dict[str, Any]:
    conn = await backend.connect()
    try:
        await backend.insert(conn, tasks)
    finally:
        await backend.close(conn)
    done, stop, finished = [0], asyncio.Event(), {}
    started = time.perf_counter()
    await asyncio.gather(*(_claimer(backend, f"c{i}", tasks, done, stop, finished) for i in range(claimers)))
    return {"tasks": done[0], "per_s": done[0] / (time.perf_counter() - started)}


async def scenario_http(backend: Backend, clients: int, tasks: int) -> dict[str, Any]:
    """A bare app inserting one row per ``POST /tasks``; ``clients`` clients and as many claimers."""
    writer = await backend.connect()
    lock = asyncio.Lock()  # one connection for the app's inserts (aiosqlite and asyncpg connections are not shared)

    async def create(request: web.Request) -> web.Response:
        body = await request.json()
        if not isinstance(body, dict) or "flow" not in body:
            return web.json_response({"error": "invalid"}, status=400)
        async with lock:
            await backend.insert(writer, 1)
        return web.json_response({"ok": True}, status=201)

    app = web.Application()
    app.router.add_post("/tasks", create)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    await web.TCPSite(runner, "127.0.0.1", port).start()
    done, stop, finished = [0], asyncio.Event(), {}
    per_client = tasks // clients

    async def client() -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(per_client):
                async with session.post(f"http://127.0.0.1:{port}/tasks", json={"flow": "noop", "params": {}}) as r:
                    assert r.status == 201, r.status

    try:
        started = time.perf_counter()
        claiming = [asyncio.create_task(_claimer(backend, f"c{i}", per_client * clients, done, stop, finished))
                    for i in range(clients)]
        await asyncio.gather(*(client() for _ in range(clients)))
        await asyncio.wait_for(asyncio.gather(*claiming), timeout=120)
        return {"tasks": done[0], "per_s": done[0] / (time.perf_counter() - started)}
    finally:
        await runner.cleanup()
        await backend.close(writer)


SCENARIOS: dict[str, Callable[[Backend, int, int], Awaitable[dict[str, Any]]]] = {
    "raw": scenario_raw, "http": scenario_http, "depth": scenario_raw}
BACKENDS: dict[str, Callable[[], Backend]] = {"sqlite": Sqlite, "postgresql": Postgres}


async def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for name in args.backends.split(","):
        for scenario in args.scenarios.split(","):
            sizes = {"raw": [args.tasks], "http": [args.http_tasks]}.get(
                scenario, [int(d) for d in args.depths.split(",")])
            for claimers in [int(c) for c in args.claimers.split(",")]:
                for size in sizes:
                    backend = BACKENDS[name]()
                    await backend.setup()
                    try:
                        result = await SCENARIOS[scenario](backend, claimers, size)
                    finally:
                        await backend.teardown()
                    row = {"backend": name, "scenario": scenario, "claimers": claimers, **result}
                    rows.append(row)
                    print(f"| {name} | {scenario} | {claimers} | {row['tasks']} | {row['per_s']:,.0f} |", flush=True)
    return rows


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--scenarios", default="raw,http")
    parser.add_argument("--claimers", default="1,4,8")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--http-tasks", type=int, default=1000)
    parser.add_argument("--depths", default="2000,20000,100000", help="backlogs drained in the depth scenario")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    print("| backend | scenario | claimers (= clients) | tasks | tasks/s |\n| --- | --- | ---: | ---: | ---: |")
    rows = asyncio.run(main(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "benchmark": "bench_reference", "at": datetime.now(UTC).isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "rows": rows}, indent=1))
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    cli()
