"""Task-queue benchmark: throughput of no-op tasks and pickup latency, on SQLite, PostgreSQL and MariaDB.

    .venv/bin/python scripts/bench_queue.py [--backends sqlite,postgresql,mariadb] [--claimers 1,4,8]
                                           [--tasks 2000] [--latency-tasks 200] [--poll-ms 5]
                                           [--depths 2000,20000,100000]

Scenarios (one function each; a result is a dict of metrics):

- ``create``: tasks created one per call (``TaskQueue.create``, one transaction each), per second.
- ``throughput``: N pending tasks, then C claimers in this process, sharing its one ``TaskQueue`` (the server's
  side: every HTTP worker's claim and finish, and the in-process worker's, go through it), drain them
  (``claim_next`` + ``mark_finished``); tasks per second from the start to the last finish, and the p50/p95 of one
  claim+finish.
- ``throughput_procs``: the same with each claimer a separate process with its own engine (Database-FS workers).
- ``http``: end to end over HTTP — C clients POST ``/vapi/tasks`` to the real app on a real socket while C
  claimers on the app's queue take and finish them (``bench_http.py``); tasks per second and p50/p95 from POST
  to finish.
- ``depth``: ``throughput`` once per backlog of ``--depths`` (default 2,000, 20,000 and 100,000 pending tasks), in
  the same run: the drain rate must not fall with the depth of the queue (``docs/queue.md``, "Depth").
- ``pickup``: C claimers poll (``claim_next``, sleeping ``--poll-ms`` when the queue is empty) while a producer
  creates tasks one at a time, 10 ms apart; p50/p95 of the time from just before the creating COMMIT to the
  claim returning.

Each backend gets a scratch database (a SQLite file, a PostgreSQL schema, a MariaDB database) that is dropped
at the end; URLs from ``VIX_BENCH_POSTGRES_URL`` / ``VIX_BENCH_MARIADB_URL`` (defaults: the test servers).
Prints a table and writes ``bench-results/bench_queue.json``.

To add a scenario (an HTTP end-to-end section, say), write ``async def scenario_name(ctx: Context) -> dict`` and
add it to ``SCENARIOS``; ``Context`` gives the database (``ctx.engine()``), the claimer count and the sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from visionatrix.db import migrate  # noqa: E402
from visionatrix.db.engine import create_engine  # noqa: E402
from visionatrix.queue.manager import TaskQueue  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from bench_http import scenario_http  # noqa: E402

POSTGRES_URL = os.environ.get("VIX_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
MARIADB_URL = os.environ.get("VIX_BENCH_MARIADB_URL", "mysql+asyncmy://root@127.0.0.1:3306/test")
GRAPH = {"1": {"class_type": "Noop", "inputs": {}}}
FLOW = "noop"
OUT = ROOT / "bench-results" / "bench_queue.json"


@dataclass
class Context:
    """What a scenario runs against: one scratch database, with empty tables."""

    backend: str
    url: str
    engine_options: dict[str, Any]
    claimers: int
    tasks: int
    latency_tasks: int
    poll_s: float
    engines: list[AsyncEngine] = field(default_factory=list)

    def engine(self) -> AsyncEngine:
        engine = create_engine(self.url, **self.engine_options)
        self.engines.append(engine)
        return engine

    async def close(self) -> None:
        await asyncio.gather(*(engine.dispose() for engine in self.engines))
        self.engines.clear()


def percentile_ms(samples_s: list[float], q: float) -> float:
    if not samples_s:
        return float("nan")
    ordered = sorted(samples_s)
    return 1000 * ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _warm(queue: TaskQueue) -> None:
    """Open the engine's first connection before the clock starts."""
    async with queue.engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


# -- scenarios ---------------------------------------------------------------------------------------------------

async def scenario_create(ctx: Context) -> dict[str, Any]:
    queue = TaskQueue(ctx.engine())
    await _warm(queue)
    n = min(ctx.tasks, 1000)
    samples = []
    started = time.perf_counter()
    for _ in range(n):
        t0 = time.perf_counter()
        await queue.create(FLOW, GRAPH, {})
        samples.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    return {"tasks": n, "per_s": n / elapsed, "p50_ms": percentile_ms(samples, 0.5),
            "p95_ms": percentile_ms(samples, 0.95)}


async def _fill(ctx: Context) -> None:
    producer = TaskQueue(ctx.engine())
    for start in range(0, ctx.tasks, 500):
        await producer.create(FLOW, GRAPH, {}, count=min(500, ctx.tasks - start))


async def _drain(queue: TaskQueue, name: str, samples: list[float]) -> int:
    """Claim and finish until the queue is empty; how many tasks this claimer ran."""
    done = 0
    while True:
        t0 = time.perf_counter()
        task = await queue.claim_next(name, [FLOW])
        if task is None:
            return done
        await queue.mark_finished(task.id, task.lease_token, timings={}, outputs=[])
        samples.append(time.perf_counter() - t0)
        done += 1


async def scenario_throughput(ctx: Context) -> dict[str, Any]:
    """C claimers in this process, sharing its one ``TaskQueue``: the server's side, where every worker's claim
    and finish arrive (HTTP workers, the in-process worker)."""
    await _fill(ctx)
    queue = TaskQueue(ctx.engine())
    await _warm(queue)
    samples: list[float] = []
    started = time.perf_counter()
    counts = await asyncio.gather(*(_drain(queue, f"w{i}", samples) for i in range(ctx.claimers)))
    elapsed = time.perf_counter() - started
    await queue.aclose()
    return _drained(ctx, sum(counts), elapsed, samples)


def _drained(ctx: Context, done: int, elapsed: float, samples: list[float]) -> dict[str, Any]:
    if done != ctx.tasks:
        raise RuntimeError(f"{done} of {ctx.tasks} tasks were claimed")
    return {"tasks": done, "per_s": done / elapsed, "p50_ms": percentile_ms(samples, 0.5),
            "p95_ms": percentile_ms(samples, 0.95)}


def _claimer_process(url: str, options: dict[str, Any], name: str, ready: Any, go: Any, results: Any) -> None:
    """One claimer in a process of its own, with its own engine: a Database-FS worker."""
    async def main() -> None:
        queue = TaskQueue(create_engine(url, **options))
        await _warm(queue)
        ready.put(name)
        await asyncio.to_thread(go.wait)
        samples: list[float] = []
        done = await _drain(queue, name, samples)
        ended = time.monotonic()
        await queue.aclose()
        await queue.engine.dispose()
        results.put((done, ended, samples))

    asyncio.run(main())


async def scenario_throughput_procs(ctx: Context) -> dict[str, Any]:
    """C claimers, each a separate process with its own engine (Database-FS workers)."""
    await _fill(ctx)
    mp = multiprocessing.get_context("spawn")
    ready, results, go = mp.Queue(), mp.Queue(), mp.Event()
    procs = [mp.Process(target=_claimer_process, args=(ctx.url, ctx.engine_options, f"p{i}", ready, go, results))
             for i in range(ctx.claimers)]
    for proc in procs:
        proc.start()
    try:
        for _ in procs:
            await asyncio.to_thread(ready.get, True, 120)
        started = time.monotonic()
        go.set()
        outcomes = [await asyncio.to_thread(results.get, True, 300) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    done = sum(count for count, _, _ in outcomes)
    elapsed = max(ended for _, ended, _ in outcomes) - started
    return _drained(ctx, done, elapsed, [s for _, _, samples in outcomes for s in samples])


async def scenario_pickup(ctx: Context) -> dict[str, Any]:
    producer = TaskQueue(ctx.engine())
    shared = TaskQueue(ctx.engine())
    queues = [shared] * ctx.claimers
    await asyncio.gather(_warm(producer), _warm(shared))
    committing_at: dict[int, float] = {}
    claimed_at: dict[int, float] = {}
    finished = asyncio.Event()

    async def claimer(name: str, queue: TaskQueue) -> None:
        while not finished.is_set():
            task = await queue.claim_next(name, [FLOW])
            if task is None:
                await asyncio.sleep(ctx.poll_s)
                continue
            claimed_at[task.id] = time.perf_counter()
            await queue.mark_finished(task.id, task.lease_token, timings={}, outputs=[])
            if len(claimed_at) == ctx.latency_tasks:
                finished.set()

    async def stamp(task_ids: list[int]) -> None:
        for task_id in task_ids:
            committing_at[task_id] = time.perf_counter()

    runners = [asyncio.create_task(claimer(f"w{i}", queue)) for i, queue in enumerate(queues)]
    for _ in range(ctx.latency_tasks):
        await producer.create(FLOW, GRAPH, {}, before_commit=stamp)
        await asyncio.sleep(0.01)
    await asyncio.wait_for(finished.wait(), timeout=60)
    await asyncio.gather(*runners)
    await shared.aclose()
    samples = [claimed_at[task_id] - committing_at[task_id] for task_id in claimed_at]
    return {"tasks": len(samples), "p50_ms": percentile_ms(samples, 0.5), "p95_ms": percentile_ms(samples, 0.95),
            "poll_ms": ctx.poll_s * 1000}


Scenario = Callable[[Context], Awaitable[dict[str, Any]]]
SCENARIOS: dict[str, tuple[Scenario, bool]] = {
    # name: (function, whether it runs once per claimer count)
    "create": (scenario_create, False),
    "throughput": (scenario_throughput, True),
    "throughput_procs": (scenario_throughput_procs, True),
    "pickup": (scenario_pickup, True),
    "http": (scenario_http, True),
    "depth": (scenario_throughput, True),
}
DEPTH_SCENARIOS = {"depth"}
"""Scenarios run once per ``--depths`` size (as ``tasks``) instead of once with ``--tasks``."""


# -- databases ---------------------------------------------------------------------------------------------------

async def _admin(url: str, statement: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def make_database(backend: str, scratch_dir: Path) -> tuple[str, dict[str, Any], Callable[[], Awaitable[None]]]:
    """A migrated scratch database: its URL, engine options, and how to drop it."""
    name = f"vix_bench_{secrets.token_hex(4)}"
    if backend == "sqlite":
        url, options = f"sqlite+aiosqlite:///{scratch_dir / (name + '.db')}", {}

        async def drop() -> None:
            return None
    elif backend == "postgresql":
        await _admin(POSTGRES_URL, f"CREATE SCHEMA {name}")
        url, options = POSTGRES_URL, {"connect_args": {"server_settings": {"search_path": name}}}

        async def drop() -> None:
            await _admin(POSTGRES_URL, f"DROP SCHEMA IF EXISTS {name} CASCADE")
    elif backend == "mariadb":
        await _admin(MARIADB_URL, f"CREATE DATABASE {name}")
        url, options = make_url(MARIADB_URL).set(database=name).render_as_string(hide_password=False), {}

        async def drop() -> None:
            await _admin(MARIADB_URL, f"DROP DATABASE IF EXISTS {name}")
    else:
        raise SystemExit(f"unknown backend {backend!r}")
    engine = create_engine(url, **options)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()
    return url, options, drop


async def clean(url: str, options: dict[str, Any]) -> None:
    """Empty tables for the next run. PostgreSQL and MariaDB truncate: a ``DELETE`` would leave the dead rows of
    the earlier runs in the claim index (until autovacuum came), and each later run would pay for them."""
    engine = create_engine(url, **options)
    try:
        async with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                await conn.execute(text("TRUNCATE task_files, tasks, workers"))
            elif engine.dialect.name in ("mysql", "mariadb"):
                for table in ("task_files", "workers"):
                    await conn.execute(text(f"TRUNCATE TABLE {table}"))
                await conn.execute(text("DELETE FROM tasks"))  # referenced by task_files' foreign key
                await conn.execute(text("ALTER TABLE tasks ENGINE=InnoDB"))  # rebuilt: no purged rows left behind
            else:
                for table in ("task_files", "tasks", "workers"):
                    await conn.execute(text(f"DELETE FROM {table}"))
    finally:
        await engine.dispose()


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="vix-bench-") as scratch:
        for backend in args.backends:
            url, options, drop = await make_database(backend, Path(scratch))
            try:
                for name in args.scenarios:
                    scenario, per_claimers = SCENARIOS[name]
                    sizes = args.depths if name in DEPTH_SCENARIOS else [args.tasks]
                    for claimers in args.claimers if per_claimers else [None]:
                        for size in sizes:
                            await clean(url, options)
                            ctx = Context(backend, url, options, claimers or 1, size, args.latency_tasks,
                                          args.poll_ms / 1000)
                            try:
                                metrics = await scenario(ctx)
                            finally:
                                await ctx.close()
                            row = {"backend": backend, "scenario": name, "claimers": claimers, **metrics}
                            results.append(row)
                            print(_line(row), flush=True)
            finally:
                await drop()
    return results


# -- output ------------------------------------------------------------------------------------------------------

COLUMNS = ("backend", "scenario", "claimers", "tasks", "per_s", "p50_ms", "p95_ms")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
    return str(value)


def _line(row: dict[str, Any]) -> str:
    return " | ".join(f"{_cell(row.get(column)):>10}" for column in COLUMNS)


def table(results: list[dict[str, Any]]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    rows = ["| " + " | ".join(_cell(row.get(column)) for column in COLUMNS) + " |" for row in results]
    return "\n".join([head, rule, *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql,mariadb", type=lambda v: v.split(","))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), type=lambda v: v.split(","))
    parser.add_argument("--claimers", default="1,4,8", type=lambda v: [int(x) for x in v.split(",")])
    parser.add_argument("--tasks", default=2000, type=int, help="tasks drained in the throughput scenario")
    parser.add_argument("--latency-tasks", default=200, type=int, help="tasks timed in the pickup scenario")
    parser.add_argument("--depths", default="2000,20000,100000", type=lambda v: [int(x) for x in v.split(",")],
                        help="backlogs drained in the depth scenario")
    parser.add_argument("--poll-ms", default=5.0, type=float, help="claimers' sleep when the queue is empty")
    parser.add_argument("--out", default=OUT, type=Path)
    args = parser.parse_args(argv)
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")

    print(" | ".join(f"{column:>10}" for column in COLUMNS))
    results = asyncio.run(run(args))
    print()
    print(table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "queue",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": {"tasks": args.tasks, "depths": args.depths, "latency_tasks": args.latency_tasks,
                     "poll_ms": args.poll_ms, "claimer_counts": args.claimers},
        "units": {"per_s": "tasks per second (create: creates per second)",
                  "p50_ms/p95_ms": "throughput: one claim+finish; pickup: commit of create -> claim returned"},
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
