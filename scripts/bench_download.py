#!/usr/bin/env python
"""Download benchmark: ``download_model`` (part file, sha256, fsync, rename) against a plain aiohttp read of the same
file from the same local server, both hashing with sha256 as they read. Goal: at least 0.9 of the plain rate.

A third client, the plain read that also writes the file, shows what keeping the bytes costs by itself (our download
adds the lock, the Range logic, fsync and the rename to it). The file (``--mb``, default 200) is generated in a temp
dir and served by ``python -m tests.model_server`` in its own process. Runs alternate between the clients; medians
are compared. Prints a table and writes JSON (default ``bench-results/bench_download.json``). Run:
``.venv/bin/python scripts/bench_download.py [--mb N] [--runs N] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from visionatrix.models import download, hosts  # noqa: E402
from visionatrix.models.catalog import CatalogModel  # noqa: E402

CHUNK_BYTES = 1 << 20
PLAIN = "plain aiohttp read + sha256"
PLAIN_TO_FILE = "plain read + sha256 + file write"
OURS = "download_model"


async def plain_read(url: str) -> tuple[float, str]:
    """Seconds to GET ``url`` reading 1 MiB chunks into sha256 (no file written), and the digest."""
    started = time.perf_counter()
    hasher = hashlib.sha256()
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        response.raise_for_status()
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            hasher.update(chunk)
    return time.perf_counter() - started, hasher.hexdigest()


async def plain_read_to_file(url: str, path: Path) -> float:
    """Seconds for the plain read that also appends each chunk to a file (no fsync): the floor of any download that
    keeps what it reads."""
    started = time.perf_counter()
    hasher = hashlib.sha256()
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        response.raise_for_status()
        with path.open("wb") as file:
            async for chunk in response.content.iter_chunked(CHUNK_BYTES):
                file.write(chunk)
                hasher.update(chunk)
    elapsed = time.perf_counter() - started
    path.unlink()
    return elapsed


async def our_download(url: str, sha256: str, size: int, target: Path) -> float:
    """Seconds for ``download_model`` from a fresh session to the verified final file."""
    policy = hosts.DownloadPolicy(allow_hosts=frozenset({"127.0.0.1"}), chunk_bytes=CHUNK_BYTES)
    model = CatalogModel("bench", url, sha256, target.name, "checkpoints", size, None, False, ("checkpoints",))
    started = time.perf_counter()
    async with hosts.open_session(policy) as session:
        await download.download_model(session, model, target, policy)
    elapsed = time.perf_counter() - started
    target.unlink()
    return elapsed


def start_server(path: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen([sys.executable, "-m", "tests.model_server", f"/big.bin={path}"], cwd=ROOT,
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    base_url = process.stdout.readline().strip()
    if not base_url.startswith("http://"):
        process.kill()
        raise RuntimeError(f"the model server did not start (exit {process.wait()})")
    return process, f"{base_url}/big.bin"


async def bench(url: str, sha256: str, size: int, workdir: Path, runs: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {PLAIN: [], PLAIN_TO_FILE: [], OURS: []}
    await plain_read(url)  # warm up the server and the page cache
    for _ in range(runs):
        elapsed, digest = await plain_read(url)
        assert digest == sha256, "the plain read got other bytes"
        times[PLAIN].append(elapsed)
        times[PLAIN_TO_FILE].append(await plain_read_to_file(url, workdir / "plain.bin"))
        times[OURS].append(await our_download(url, sha256, size, workdir / "out" / "big.bin"))
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", default=str(ROOT / "bench-results" / "bench_download.json"))
    args = parser.parse_args()
    size = args.mb * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        source = workdir / "big.bin"
        source.write_bytes(os.urandom(size))
        sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
        process, url = start_server(source)
        try:
            times = asyncio.run(bench(url, sha256, size, workdir, args.runs))
        finally:
            process.kill()
            process.wait()
    rows = [{"client": name, "runs": len(ts), "median_s": statistics.median(ts), "min_s": min(ts),
             "median_mb_s": size / 1024**2 / statistics.median(ts)} for name, ts in times.items()]
    rate = {row["client"]: row["median_mb_s"] for row in rows}
    ratio, ratio_to_file = rate[OURS] / rate[PLAIN], rate[OURS] / rate[PLAIN_TO_FILE]
    print(f"{'client':<34} {'runs':>4} {'median s':>9} {'min s':>8} {'MiB/s':>8}")
    for row in rows:
        print(f"{row['client']:<34} {row['runs']:>4} {row['median_s']:>9.3f} {row['min_s']:>8.3f} "
              f"{row['median_mb_s']:>8.1f}")
    print(f"download_model / plain read: {ratio:.3f} (goal >= 0.9); / plain read to a file: {ratio_to_file:.3f}; "
          f"{os.cpu_count()} CPUs")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"file_mb": args.mb, "python": platform.python_version(),
                               "machine": platform.machine(), "cpus": os.cpu_count(), "rows": rows,
                               "ratio": ratio, "ratio_to_file_write": ratio_to_file, "goal_ratio": 0.9}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
