"""Worker benchmark: a scaled-out Visionatrix on real processes, sockets and databases.

    .venv/bin/python scripts/bench_workers.py [--backends sqlite,postgresql] [--modes http,db] [--workers 1,2,4]
                                             [--tasks 200] [--pickups 15] [--busy-tasks 20] [--run-s 0.5]
                                             [--links local,1gbit,100mbit] [--sections fleet,busy]

Sections:

- ``fleet``: per backend one ``VIX_MODE=SERVER`` process; per mode (``http``: Server-mode workers, ``db``:
  Database-FS workers) and worker count, that many ``VIX_MODE=WORKER`` processes with the product's defaults
  (long poll 20 s; PostgreSQL NOTIFY; on SQLite, polling 0.05 s doubling to 2 s).
  ``tasks/s``: ``--tasks`` tasks of ``bench_tiny`` (an 8x8 image saved) queued in one request; tasks / (last
  ``finished_at`` - first ``created_at``). ``pickup``: ``--pickups`` tasks queued one at a time while every worker
  is idle (0.5-2 s apart, so polling workers have backed off); ``started_at`` - ``created_at`` (the claim and the
  preparation of the inputs: ``started_at`` is the run's start, reported right after).
- ``busy``: how much of the time a worker's executor works, over ``--busy-tasks`` tasks each with a 4 MB input
  (a noise PNG, incompressible) and a 4 MB output, ``E2ESleep`` holding the executor ``--run-s`` s (the GPU's
  work). One Server-mode worker runs in this process — the real ``Worker``, ``HttpSource`` and ``Executor``, the
  executor timed — against a SERVER process, directly (``local``) or through a shaping proxy (``1gbit``,
  ``100mbit``: that many bits per second each way, shared by the worker's connections). Variants: ``pipelined``
  (the product: one claim ahead, results stored while the next task runs), ``sequential`` (claim, download, run,
  upload, one after another), ``visionatrix`` (sequential, and claims that poll as Visionatrix's worker does:
  after n empty polls it sleeps min(0.1 + 0.1*n, 1.0) s). Scenarios: ``backlog`` (all tasks queued first) and
  ``stream`` (one task every ``--stream-every-s`` s, 1.2 by default). ``busy %`` = sum of executor time / (last
  finish - first queued); ``gap`` = the executor's idle time between one run and the next; ``latency`` = queued to
  finished. On a machine with few cores the runs (PNG decoding and encoding) share the CPU with the transfers and
  the server, so compare ``tasks/s`` and ``gap`` more than ``busy %``.

Needs the test databases for PostgreSQL (``VIX_TEST_POSTGRES_URL``, default the local server); uses the e2e
harness (``tests/e2e/cluster.py``) for processes and scratch databases. Prints a table and writes
``bench-results/bench_workers.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from tests.e2e.cluster import Server, WorkerProcess, http_json, scratch_database, wait_until  # noqa: E402
from visionatrix.cli.nodes_list import load_registry  # noqa: E402
from visionatrix.client import VixClient  # noqa: E402
from visionatrix.config import load_settings  # noqa: E402
from visionatrix.executor.run import Executor, ExecutorSettings  # noqa: E402
from visionatrix.queue.models import ClaimedTask  # noqa: E402
from visionatrix.server.request_models import MAX_COUNT  # noqa: E402
from visionatrix.worker.daemon import Worker, WorkerOptions  # noqa: E402
from visionatrix.worker.http_source import HttpSource  # noqa: E402
from visionatrix.worker.source import TaskSource  # noqa: E402

DATA = ROOT / "scripts" / "bench_data"
NODES = ROOT / "tests" / "e2e" / "data" / "nodes"
OUT = ROOT / "bench-results" / "bench_workers.json"
PRODUCT_POLLING = {"VIX_POLL_MIN_S": "", "VIX_POLL_MAX_S": "", "VIX_PROGRESS_INTERVAL_S": "", "LOG_LEVEL": "WARNING"}
"""The harness's test settings set back to the product's defaults."""
LINKS = {"local": None, "1gbit": 125_000_000.0, "100mbit": 12_500_000.0}
"""Bytes per second each way between worker and server; None: loopback, no proxy."""


def percentile_ms(samples_s: Sequence[float], q: float) -> float:
    ordered = sorted(samples_s)
    return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _when(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def server_env(database_uri: str) -> dict[str, str]:
    return {**PRODUCT_POLLING, "VIX_FLOWS_DIRS": str(DATA / "flows"), "VIX_NODES_DIRS": str(NODES),
            "DATABASE_URI": database_uri}


# -- fleet: tasks/s and pickup -----------------------------------------------------------------------------------

def _tasks(server: Server, ids: list[int]) -> list[dict[str, Any]]:
    return [server.task(task_id) for task_id in ids]


def _wait_done(server: Server, ids: list[int], timeout_s: float) -> list[dict[str, Any]]:
    def done() -> bool:
        for status in ("pending", "running"):
            if http_json(f"{server.url}/vapi/tasks?status={status}&limit=1")["tasks"]:
                return False
        return True

    wait_until(done, timeout_s, "every task finished", every_s=0.1, logs=[server])
    tasks = _tasks(server, ids)
    failed = [t["id"] for t in tasks if t["status"] != "finished"]
    if failed:
        raise RuntimeError(f"tasks did not finish: {failed[:10]}")
    return tasks


def fleet_run(server: Server, workdir: Path, backend: str, database_uri: str, mode: str, count: int,
              args: argparse.Namespace) -> dict[str, Any]:
    workers = []
    try:
        for index in range(count):
            name = f"{mode}-{count}-{index}"
            env = {**server_env(database_uri), "VIX_WORKER_NAME": name}
            if mode == "http":
                worker = WorkerProcess(name, workdir / name, flows=["bench_tiny"], server=server, env=env)
            else:
                worker = WorkerProcess(name, workdir / name, flows=["bench_tiny"], database_uri=database_uri,
                                       tasks_files=server.tasks_files, env=env)
            workers.append(worker)
        for worker in workers:
            worker.wait_registered(server, timeout_s=120)
        _wait_done(server, server.create("bench_tiny", count=2 * count), 120)  # warm: graphs, connections
        ids: list[int] = []
        while len(ids) < args.tasks:  # as fast as the server takes them, at most MAX_COUNT per request
            ids += server.create("bench_tiny", count=min(MAX_COUNT, args.tasks - len(ids)))
        tasks = _wait_done(server, ids, 600)
        first = min(_when(t["created_at"]) for t in tasks)
        last = max(_when(t["finished_at"]) for t in tasks)
        pickups = []
        for _ in range(args.pickups):
            time.sleep(random.uniform(0.5, 2.0))
            [task] = _wait_done(server, server.create("bench_tiny"), 60)
            pickups.append(_when(task["started_at"]) - _when(task["created_at"]))
        return {"section": "fleet", "backend": backend, "mode": mode, "workers": count, "tasks": len(tasks),
                "tasks_per_s": round(len(tasks) / (last - first), 1),
                "pickup_p50_ms": percentile_ms(pickups, 0.5), "pickup_p95_ms": percentile_ms(pickups, 0.95),
                "pickup_max_ms": round(1000 * max(pickups), 1)}
    finally:
        for worker in workers:
            worker.stop()


def fleet(args: argparse.Namespace, scratch: Path) -> Iterator[dict[str, Any]]:
    for backend in args.backends:
        with scratch_database(backend, scratch) as database_uri:
            workdir = scratch / f"fleet-{backend}"
            server = Server(workdir / "server", database_uri, env=server_env(database_uri)).wait_ready()
            try:
                for mode in args.modes:
                    for count in args.workers:
                        row = fleet_run(server, workdir, backend, database_uri, mode, count, args)
                        print(_line(row), flush=True)
                        yield row
            finally:
                server.stop()


# -- busy: the executor's share of the time ----------------------------------------------------------------------

class TimedExecutor(Executor):
    """The real executor; the time each run took."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.runs: list[tuple[float, float]] = []

    async def execute(self, prompt: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return await super().execute(prompt, **kwargs)
        finally:
            self.runs.append((started, time.monotonic()))

    def busy_s(self) -> list[float]:
        return [end - start for start, end in self.runs]

    def gaps_s(self) -> list[float]:
        """Idle time between one run's end and the next one's start."""
        return [self.runs[i + 1][0] - self.runs[i][1] for i in range(len(self.runs) - 1)] or [0.0]


class PollingSource:
    """Claims as Visionatrix's worker makes them: no waiting on the server; after n empty polls a pause of
    min(0.1 + 0.1*n, 1.0) s (its ``MIN_PAUSE_INTERVAL``/``MAX_PAUSE_INTERVAL``). Everything else is ``inner``'s."""

    def __init__(self, inner: HttpSource) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def claim(self, worker_id: str, flows: Sequence[str], last_flow: str | None, wait_s: float, *,
                    ahead: bool = False) -> ClaimedTask | None:
        deadline = time.monotonic() + wait_s
        empty = 0
        while True:
            task = await self.inner.claim(worker_id, flows, last_flow, 0.0)
            if task is not None or time.monotonic() >= deadline:
                return task
            await asyncio.sleep(min(0.1 + 0.1 * empty, 1.0))
            empty = min(empty + 1, 10)


class ShapedLink:
    """A TCP proxy to ``target_port`` passing ``bytes_per_s`` each way (shared by every connection), in a thread
    of its own so the worker's loop does not pay for it."""

    def __init__(self, target_port: int, bytes_per_s: float) -> None:
        self.target_port = target_port
        self.bytes_per_s = bytes_per_s
        self._free_at = {"up": 0.0, "down": 0.0}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="shaped-link", daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._pipe, "127.0.0.1", 0), self._loop).result(10)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def close(self) -> None:
        async def shut() -> None:
            self._server.close()
            pipes = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in pipes:
                task.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        await asyncio.gather(self._copy(reader, up_writer, "up"), self._copy(up_reader, writer, "down"),
                             return_exceptions=True)

    async def _copy(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, way: str) -> None:
        try:
            while data := await source.read(65536):
                now = self._loop.time()
                start = max(now, self._free_at[way])
                self._free_at[way] = start + len(data) / self.bytes_per_s
                await asyncio.sleep(self._free_at[way] - now)
                sink.write(data)
                await sink.drain()
        finally:
            sink.close()


def noise_png(path: Path, side: int = 1160) -> int:
    """An incompressible PNG of about 4 MB."""
    pixels = np.random.default_rng(7).integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, compress_level=1)
    return path.stat().st_size


VARIANTS = {"pipelined": {}, "sequential": {"claim_ahead": False, "conclude_in_background": False},
            "visionatrix": {"claim_ahead": False, "conclude_in_background": False}}


async def busy_run(server: Server, executor: TimedExecutor, image: Path, work: Path, *, link: str, variant: str,
                   scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    rate = LINKS[link]
    shaped = ShapedLink(server.port, rate) if rate is not None else None
    url = shaped.url if shaped is not None else server.url
    temp = work / f"{link}-{variant}-{scenario}"
    http = HttpSource(url, auth=None, temp_dir=temp)
    source = cast(TaskSource, PollingSource(http) if variant == "visionatrix" else http)
    options = WorkerOptions(worker_id=f"bench-{variant}", installed_flows=["bench_copy"], claim_wait_s=20.0,
                            **VARIANTS[variant])
    executor.runs.clear()
    stop = asyncio.Event()
    try:
        async with VixClient(server.url) as vix:
            running = asyncio.create_task(Worker(source, executor, options).run(stop))
            await asyncio.sleep(1.0)  # the worker is up and waiting
            queued_at = time.time()
            params = {"seconds": args.run_s}
            if scenario == "backlog":
                ids = []
                while len(ids) < args.busy_tasks:
                    ids += await vix.create_task("bench_copy", params, files={"image": image},
                                                 count=min(MAX_COUNT, args.busy_tasks - len(ids)))
            else:
                ids = []
                for _ in range(args.busy_tasks):
                    ids += await vix.create_task("bench_copy", params, files={"image": image})
                    await asyncio.sleep(args.stream_every_s)
            tasks = await asyncio.to_thread(_wait_done, server, ids, 900)
            stop.set()
            await running
    finally:
        await http.close()
        if shaped is not None:
            shaped.close()
    last = max(_when(t["finished_at"]) for t in tasks)
    latencies = [_when(t["finished_at"]) - _when(t["created_at"]) for t in tasks]
    wall = last - queued_at
    busy = executor.busy_s()
    return {"section": "busy", "link": link, "scenario": scenario, "variant": variant, "tasks": len(tasks),
            "executor_busy_pct": round(100 * sum(busy) / wall, 1), "tasks_per_s": round(len(tasks) / wall, 2),
            "run_mean_s": round(statistics.mean(busy), 3),
            "gap_p50_ms": round(1000 * statistics.median(executor.gaps_s()), 1),
            "latency_p50_s": round(statistics.median(latencies), 2), "wall_s": round(wall, 1)}


async def busy_async(args: argparse.Namespace, scratch: Path) -> list[dict[str, Any]]:
    image = scratch / "noise.png"
    size = noise_png(image)
    print(f"input: {size / 1e6:.1f} MB noise PNG; output about the same", flush=True)
    settings = load_settings(env={"VIX_NODES_DIRS": str(NODES), "VIX_DEVICE": os.environ.get("VIX_DEVICE", "")})
    executor = TimedExecutor(load_registry(settings), ExecutorSettings(  # no output cache: every run is real work
        device=settings.device, temp_dir=scratch / "executor_temp", cache_max_entries=0))
    rows = []
    try:
        with scratch_database("sqlite", scratch) as database_uri:
            server = Server(scratch / "busy-server", database_uri, env=server_env(database_uri)).wait_ready()
            try:
                for link in args.links:
                    for scenario in ("backlog", "stream"):
                        for variant in VARIANTS:
                            row = await busy_run(server, executor, image, scratch / "busy", link=link,
                                                 variant=variant, scenario=scenario, args=args)
                            print(_line(row), flush=True)
                            rows.append(row)
            finally:
                server.stop()
    finally:
        executor.close()
    return rows


# -- output ------------------------------------------------------------------------------------------------------

def _line(row: dict[str, Any]) -> str:
    return "  ".join(f"{key}={value}" for key, value in row.items() if key != "section")


def table(rows: list[dict[str, Any]]) -> str:
    out = []
    for section in ("fleet", "busy"):
        chosen = [r for r in rows if r["section"] == section]
        if not chosen:
            continue
        keys = [k for k in chosen[0] if k != "section"]
        widths = [max(len(k), *(len(str(r[k])) for r in chosen)) for k in keys]
        out.append("  ".join(k.ljust(w) for k, w in zip(keys, widths, strict=True)))
        out += ["  ".join(str(r[k]).ljust(w) for k, w in zip(keys, widths, strict=True)) for r in chosen]
        out.append("")
    return "\n".join(out)


def _names(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backends", type=_names, default=["sqlite", "postgresql"])
    parser.add_argument("--modes", type=_names, default=["http", "db"])
    parser.add_argument("--workers", type=lambda v: [int(x) for x in _names(v)], default=[1, 2, 4])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--pickups", type=int, default=15)
    parser.add_argument("--busy-tasks", type=int, default=20)
    parser.add_argument("--run-s", type=float, default=0.5)
    parser.add_argument("--stream-every-s", type=float, default=1.2)
    parser.add_argument("--links", type=_names, default=list(LINKS))
    parser.add_argument("--sections", type=_names, default=["fleet", "busy"])
    parser.add_argument("--out", type=Path, default=OUT, help=f"JSON results (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    unknown = [v for v in args.links if v not in LINKS] + [v for v in args.modes if v not in ("http", "db")]
    if unknown:
        parser.error(f"unknown link or mode: {', '.join(unknown)}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as folder:
        scratch = Path(folder)
        if "fleet" in args.sections:
            rows += list(fleet(args, scratch))
        if "busy" in args.sections:
            rows += asyncio.run(busy_async(args, scratch))
    print()
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                                    "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                                    "results": rows}, indent=2))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
