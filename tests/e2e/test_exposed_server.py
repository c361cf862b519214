"""A server with sign-in on, as an operator runs it: real processes, a real Server-mode worker holding a worker
token, an admin and a user signing in with HTTP Basic and API tokens."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.e2e.cluster import BASE_ENV, Server, WorkerProcess, scratch_database, wait_until
from tests.e2e.service import ROOT
from visionatrix.auth.store import AuthStore
from visionatrix.db import migrate
from visionatrix.db.engine import create_engine


def _prepare(database_uri: str) -> str:
    """Migrate, create an admin and a user; a worker token's secret."""
    async def run() -> str:
        engine = create_engine(database_uri)
        try:
            await migrate.upgrade(engine)
            store = AuthStore(engine)
            await store.create_user("root", "root-password", admin=True)
            await store.create_user("ann", "ann-password")
            secret, _token = await store.issue("worker", "gpu-1")
            return secret
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _call(url: str, method: str = "GET", body: Any = None, *, auth: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        with exc:  # its response holds the connection
            return exc.code, json.loads(exc.read() or b"null")


def _basic(name: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()


def test_a_worker_token_runs_tasks_until_revoked_and_users_see_their_own(tmp_path: Path) -> None:
    with scratch_database("sqlite", tmp_path) as database_uri:
        worker_token = _prepare(database_uri)
        server = Server(tmp_path / "server", database_uri, {"VIX_AUTH": "on"}).wait_ready()
        worker = WorkerProcess("gpu-1", tmp_path / "gpu-1", flows=["e2e_red"], server=server,
                               env={"WORKER_AUTH": worker_token})
        root, ann = _basic("root", "root-password"), _basic("ann", "ann-password")
        try:
            assert _call(f"{server.url}/vapi/tasks")[0] == 401
            status, created = _call(f"{server.url}/vapi/auth/tokens", "POST", {"name": "script"}, auth=ann)
            assert status == 201
            ann_token = f"Bearer {created['token']}"
            status, reply = _call(f"{server.url}/vapi/tasks", "POST", {"flow": "e2e_red", "params": {"size": 8}},
                                  auth=ann_token)
            assert status == 201, reply
            (ann_task,) = reply["task_ids"]
            (root_task,) = _call(f"{server.url}/vapi/tasks", "POST", {"flow": "e2e_red", "params": {"size": 8}},
                                 auth=root)[1]["task_ids"]

            def finished(task_id: int) -> bool:
                return _call(f"{server.url}/vapi/tasks/{task_id}", auth=root)[1]["status"] == "finished"

            wait_until(lambda: finished(ann_task) and finished(root_task), 90, "both tasks run by the worker",
                       logs=[server, worker])
            assert [t["id"] for t in _call(f"{server.url}/vapi/tasks", auth=ann_token)[1]["tasks"]] == [ann_task]
            assert _call(f"{server.url}/vapi/tasks/{root_task}", auth=ann)[0] == 404
            assert {t["id"] for t in _call(f"{server.url}/vapi/tasks", auth=root)[1]["tasks"]} == {ann_task,
                                                                                                  root_task}
            assert _call(f"{server.url}/vapi/workers", auth=ann)[0] == 403
            tokens = _call(f"{server.url}/vapi/worker_tokens", auth=root)[1]["tokens"]
            assert [t["name"] for t in tokens] == ["gpu-1"] and worker_token not in json.dumps(tokens)
            assert _call(f"{server.url}/vapi/worker_tokens/{tokens[0]['id']}", "DELETE", auth=root)[0] == 200
            (late,) = _call(f"{server.url}/vapi/tasks", "POST", {"flow": "e2e_red", "params": {"size": 8}},
                            auth=root)[1]["task_ids"]
            wait_until(lambda: not worker.alive(), 60, "the worker stopping after its token was revoked",
                       logs=[server, worker])
            assert "refused the worker credentials" in worker.log()
            # not run: still pending, or handed to the claim the worker had open when its token was revoked (then
            # requeued when that lease expires)
            assert _call(f"{server.url}/vapi/tasks/{late}", auth=root)[1]["status"] in ("pending", "claimed")
            assert _call(f"{server.url}/vapi/tasks/{late}", auth=root)[1]["progress"] == 0
            assert worker_token not in server.log() + worker.log()
            assert "ann-password" not in server.log()
        finally:
            worker.stop()
            server.stop()


def test_an_exposed_server_without_a_user_does_not_start(tmp_path: Path) -> None:
    env = {**BASE_ENV, "DATABASE_URI": f"sqlite+aiosqlite:///{tmp_path / 'vix.db'}", "VIX_PORT": "0",
           "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "visionatrix", "run", "--host", "0.0.0.0", "--mode", "SERVER"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "users create NAME --admin" in done.stderr and "VIX_AUTH=off" in done.stderr
