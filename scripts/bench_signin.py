"""Sign-in cost per request: the same ``GET /vapi/tasks?limit=1`` with sign-in off, and with it on through a web
session, an API token and HTTP Basic; a bare aiohttp app answering the same bytes is the baseline. Also the cost of
one password check (our ``verify_password`` against ``hashlib.scrypt`` called directly).

    .venv/bin/python scripts/bench_signin.py [--requests 2000] [--concurrency 8]

Everything in this process: the real app on a real socket (SQLite in a temporary folder), an aiohttp client.
Prints a table and writes ``bench-results/bench_signin.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from visionatrix.auth import passwords  # noqa: E402
from visionatrix.db import migrate  # noqa: E402
from visionatrix.db.engine import create_engine  # noqa: E402
from visionatrix.flows.catalog import FlowCatalog  # noqa: E402
from visionatrix.nodes.registry import NodeRegistry  # noqa: E402
from visionatrix.queue.events import TaskEvents  # noqa: E402
from visionatrix.queue.manager import TaskQueue  # noqa: E402
from visionatrix.security_config import SecuritySettings  # noqa: E402
from visionatrix.server.app import create_app  # noqa: E402
from visionatrix.server.services import Services  # noqa: E402
from visionatrix.server.signin import SESSION_COOKIE, SIGNIN  # noqa: E402
from visionatrix.storage.files import TaskStorage  # noqa: E402

PATH = "/vapi/tasks?limit=1"
PASSWORD = "bench-password-1"


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def _load(url: str, headers: dict[str, str], requests: int, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    left = requests

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            started = time.perf_counter()
            async with session.get(url + PATH, headers=headers) as response:
                await response.read()
                assert response.status == 200, response.status
            latencies.append(time.perf_counter() - started)

    async with aiohttp.ClientSession() as session:
        for _ in range(50):  # warm up: connections, caches
            async with session.get(url + PATH, headers=headers) as response:
                await response.read()
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(statistics.median(latencies) * 1000, 2),
            "p95_ms": round(latencies[int(len(latencies) * 0.95)] * 1000, 2)}


async def _services(folder: Path, auth: str) -> Services:
    engine = create_engine(f"sqlite+aiosqlite:///{folder / f'{auth}.db'}")
    await migrate.upgrade(engine)
    registry = NodeRegistry()
    return Services(queue=TaskQueue(engine, events=TaskEvents()),
                    storage=TaskStorage(folder / f"files-{auth}", max_upload_bytes=1024),
                    flows=FlowCatalog([], folder / "flows", {}), registry=registry, events=TaskEvents(),
                    max_image_pixels=1024, version="bench", security=SecuritySettings(auth=auth))


async def bench(requests: int, concurrency: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        off = await _services(folder, "off")
        runner, url = await _serve(create_app(off))
        async with aiohttp.ClientSession() as session, session.get(url + PATH) as response:
            payload = await response.read()
        results["sign-in off"] = await _load(url, {}, requests, concurrency)
        await runner.cleanup()
        await off.queue.engine.dispose()

        bare = web.Application()

        async def answer(_request: web.Request) -> web.Response:
            return web.Response(body=payload, content_type="application/json")

        bare.router.add_get("/vapi/tasks", answer)
        runner, url = await _serve(bare)
        results["bare aiohttp (baseline)"] = await _load(url, {}, requests, concurrency)
        await runner.cleanup()

        on = await _services(folder, "on")
        app = create_app(on)
        store = app[SIGNIN].store
        user = await store.create_user("bench", PASSWORD)
        api_token, _ = await store.issue("api", "bench", user_id=user.id)
        runner, url = await _serve(app)
        async with aiohttp.ClientSession() as session, session.post(
                url + "/vapi/auth/login", json={"name": "bench", "password": PASSWORD}) as response:
            session_cookie = response.cookies[SESSION_COOKIE].value
        basic = "Basic " + base64.b64encode(f"bench:{PASSWORD}".encode()).decode()
        for label, headers in (("session cookie", {"Cookie": f"{SESSION_COOKIE}={session_cookie}"}),
                               ("API token", {"Authorization": f"Bearer {api_token}"}),
                               ("HTTP Basic (remembered)", {"Authorization": basic})):
            results[label] = await _load(url, headers, requests, concurrency)
        await runner.cleanup()
        await on.queue.engine.dispose()

    stored = passwords.hash_password(PASSWORD)
    started = time.perf_counter()
    for _ in range(5):
        assert passwords.verify_password(PASSWORD, stored)
    ours = (time.perf_counter() - started) / 5
    _, log2_n, r, p, salt, _digest = stored.split("$")
    started = time.perf_counter()
    for _ in range(5):
        hashlib.scrypt(PASSWORD.encode(), salt=base64.b64decode(salt), n=1 << int(log2_n), r=int(r), p=int(p),
                       maxmem=256 * (1 << int(log2_n)) * int(r) + 1024 * 1024, dklen=32)
    direct = (time.perf_counter() - started) / 5
    results["password check"] = {"ours_ms": round(ours * 1000, 1), "hashlib_scrypt_ms": round(direct * 1000, 1)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    results = asyncio.run(bench(args.requests, args.concurrency))
    print(f"{'GET ' + PATH:<28} {'req/s':>9} {'p50 ms':>8} {'p95 ms':>8}")
    for label, row in results.items():
        if "requests_per_s" in row:
            print(f"{label:<28} {row['requests_per_s']:>9} {row['p50_ms']:>8} {row['p95_ms']:>8}")
    check = results["password check"]
    print(f"password check: ours {check['ours_ms']} ms, hashlib.scrypt {check['hashlib_scrypt_ms']} ms")
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "bench_signin.json").write_text(json.dumps({
        "machine": platform.platform(), "python": platform.python_version(), "requests": args.requests,
        "concurrency": args.concurrency, "results": results}, indent=2))


if __name__ == "__main__":
    main()
