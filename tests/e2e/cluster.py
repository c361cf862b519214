"""A scaled-out Visionatrix for end-to-end tests: a SERVER process, WORKER processes in both modes, a scratch
database per backend, and a TCP proxy that a test can cut and restore between a worker and the server.

Everything is real: ``python -m visionatrix run`` processes, sockets, databases, files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import text

from tests.e2e.service import ROOT, free_port, stop_process

DATA = Path(__file__).resolve().parent / "data"
POSTGRES_ADMIN = os.environ.get("VIX_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
MARIADB_ADMIN = os.environ.get("VIX_TEST_MARIADB_URL", "mysql+asyncmy://root@127.0.0.1:3306/test")
BASE_ENV = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "VIX_PROGRESS_INTERVAL_S": "0.1",
            "VIX_FLOWS_DIRS": str(DATA / "flows"), "VIX_NODES_DIRS": str(DATA / "nodes"), "VIX_DEVICE": "cpu",
            "VIX_POLL_MIN_S": "0.02", "VIX_POLL_MAX_S": "0.5", "LOG_LEVEL": "INFO"}


class VixProcess:
    """One ``python -m visionatrix run`` process with its own working folder and log."""

    def __init__(self, name: str, workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("a")
        self.env = {**BASE_ENV, **env}
        self.process = subprocess.Popen([sys.executable, "-m", "visionatrix", "run"], cwd=workdir, env=self.env,
                                        stdout=self._log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> int:
        code = stop_process(self.process, sig, timeout_s)
        self._log.close()
        return code

    def kill(self) -> None:
        """``kill -9``: no shutdown of any kind."""
        self.process.kill()
        self.process.wait()
        self._log.close()


def http_json(url: str, method: str = "GET", body: Any = None, timeout_s: float = 10.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        return json.loads(response.read() or b"null")


def wait_until(predicate: Any, timeout_s: float, what: str, *, every_s: float = 0.1,
               logs: list[VixProcess] = ()) -> Any:  # type: ignore[assignment]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            value = predicate()
            if value:
                return value
        time.sleep(every_s)
    tails = "\n".join(f"--- {p.name} ---\n{p.log()[-3000:]}" for p in logs)
    raise TimeoutError(f"{what}: not within {timeout_s} s\n{tails}")


class Server(VixProcess):
    def __init__(self, workdir: Path, database_uri: str, env: dict[str, str] | None = None,
                 port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__("server", workdir, {"VIX_MODE": "SERVER", "VIX_PORT": str(self.port),
                                             "DATABASE_URI": database_uri,
                                             "TASKS_FILES_DIR": str(workdir / "vix_tasks_files"), **(env or {})})
        self.tasks_files = workdir / "vix_tasks_files"

    def wait_ready(self, timeout_s: float = 60.0) -> Server:
        def ready() -> bool:
            if not self.alive():
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            return http_json(f"{self.url}/vapi/health", timeout_s=1)["status"] == "ok"

        wait_until(ready, timeout_s, "server health", every_s=0.2, logs=[self])
        return self

    def workers(self) -> dict[str, dict[str, Any]]:
        return {w["worker_id"]: w for w in http_json(f"{self.url}/vapi/workers")["workers"]}

    def task(self, task_id: int) -> dict[str, Any]:
        return http_json(f"{self.url}/vapi/tasks/{task_id}")

    def create(self, flow: str, params: dict[str, Any] | None = None, count: int = 1) -> list[int]:
        reply = http_json(f"{self.url}/vapi/tasks", "POST", {"flow": flow, "params": params or {}, "count": count})
        return [int(task_id) for task_id in reply["task_ids"]]


class WorkerProcess(VixProcess):
    def __init__(self, name: str, workdir: Path, *, flows: list[str], server: Server | None = None,
                 database_uri: str | None = None, tasks_files: Path | None = None,
                 env: dict[str, str] | None = None) -> None:
        mode_env = ({"VIX_HOST": server.url} if database_uri is None and server is not None
                    else {"DATABASE_URI": database_uri or "", "TASKS_FILES_DIR": str(tasks_files)})
        if database_uri is None:
            mode_env["TASKS_FILES_DIR"] = str(workdir / "vix_tasks_files")
        super().__init__(name, workdir, {"VIX_MODE": "WORKER", "VIX_WORKER_NAME": name,
                                         "VIX_WORKER_FLOWS": ";".join(flows), **mode_env, **(env or {})})
        self.flows = flows
        self.temp_files = workdir / "vix_tasks_files"

    def wait_registered(self, server: Server, timeout_s: float = 60.0) -> WorkerProcess:
        def registered() -> bool:
            if not self.alive():
                raise RuntimeError(f"worker {self.name} exited with {self.process.returncode}:\n{self.log()}")
            return self.name in server.workers()

        wait_until(registered, timeout_s, f"worker {self.name} reporting in", every_s=0.2, logs=[self, server])
        return self


# -- databases ---------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def scratch_database(backend: str, folder: Path) -> Iterator[str]:
    """A new empty database of ``backend`` for one test; its ``DATABASE_URI``. Dropped afterwards."""
    name = f"vix_e2e_{secrets.token_hex(4)}"
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{folder / (name + '.db')}"
        return
    admin = POSTGRES_ADMIN if backend == "postgresql" else MARIADB_ADMIN
    asyncio.run(_admin(admin, f"CREATE DATABASE {name}"))
    try:
        base, _, _ = admin.rpartition("/")
        yield f"{base}/{name}"
    finally:
        drop = (f"DROP DATABASE IF EXISTS {name} WITH (FORCE)" if backend == "postgresql"
                else f"DROP DATABASE IF EXISTS {name}")
        asyncio.run(_admin(admin, drop))


async def _admin(url: str, statement: str) -> None:
    from visionatrix.db.engine import create_engine

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


# -- a TCP proxy a test can cut ----------------------------------------------------------------------------------

class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_port``. ``cut()`` closes the listener and every live connection
    (the worker sees the server vanish); ``restore()`` listens again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._thread.start()
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.restore()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def restore(self) -> None:
        self._call(self._listen())

    def cut(self) -> None:
        self._call(self._close())

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()  # its self-pipe (a socket pair) would otherwise be left to the garbage collector

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port, reuse_address=True)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                sink.transport.abort() if sink.transport.is_closing() else sink.close()

        await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        self._writers.discard(writer)
        self._writers.discard(up_writer)

