"""Scaled out, end to end: a SERVER, two Server-mode workers and one Database-FS worker with different installed
flows, on SQLite (one host), PostgreSQL and MariaDB; a worker killed with ``kill -9`` mid-task; a worker cut off from
the server by a proxy; a server restarted with tasks queued; SIGTERM of a busy worker.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.cluster import Server, TcpProxy, WorkerProcess, http_json, scratch_database, wait_until

FLOWS = ("e2e_red", "e2e_green", "e2e_blue", "e2e_gray")
TASKS_PER_FLOW = 50


def _tasks(server: Server, status: str | None = None) -> list[dict[str, Any]]:
    query = f"?limit=500&status={status}" if status else "?limit=500"
    return http_json(f"{server.url}/vapi/tasks{query}")["tasks"]


def _files_under(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()] if folder.exists() else []


def _all_finished(server: Server, total: int, processes: list[Any], timeout_s: float) -> list[dict[str, Any]]:
    def finished() -> list[dict[str, Any]] | None:
        tasks = _tasks(server)
        failed = [t for t in tasks if t["status"] in ("failed", "cancelled")]
        assert not failed, f"tasks ended badly: {failed[:3]}"
        done = [t for t in tasks if t["status"] == "finished"]
        return tasks if len(done) == total else None

    return wait_until(finished, timeout_s, f"{total} tasks finished", every_s=0.25, logs=processes)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mariadb"])
def test_three_workers_share_200_tasks_by_their_flows(tmp_path: Path, backend: str) -> None:
    with scratch_database(backend, tmp_path) as database_uri:
        server = Server(tmp_path / "server", database_uri).wait_ready()
        workers = [
            WorkerProcess("http-1", tmp_path / "http-1", flows=["e2e_red", "e2e_green"], server=server),
            WorkerProcess("http-2", tmp_path / "http-2", flows=["e2e_green", "e2e_blue"], server=server),
            WorkerProcess("dbfs-1", tmp_path / "dbfs-1", flows=["e2e_gray", "e2e_red"], database_uri=database_uri,
                          tasks_files=server.tasks_files),
        ]
        processes = [server, *workers]
        try:
            for worker in workers:
                worker.wait_registered(server)
            listed = server.workers()
            assert listed["http-1"]["mode"] == "WORKER_HTTP" and listed["dbfs-1"]["mode"] == "WORKER_DB"
            assert listed["http-2"]["installed_flows"] == ["e2e_green", "e2e_blue"]
            task_ids = [task_id for flow in FLOWS for task_id in server.create(flow, {"size": 8},
                                                                                 count=TASKS_PER_FLOW)]
            tasks = _all_finished(server, len(task_ids), processes, timeout_s=240)
        finally:
            codes = {worker.name: worker.stop() for worker in workers}
            server_code = server.stop()
        assert codes == {"http-1": 0, "http-2": 0, "dbfs-1": 0}, codes
        assert server_code == 0
        flows_of = {worker.name: set(worker.flows) for worker in workers}
        ran_by: dict[str, int] = {}
        for task in tasks:
            assert task["flow"] in flows_of[task["worker_id"]], f"task {task['id']} ran on a worker without its flow"
            assert task["attempt"] == 1, f"task {task['id']} ran {task['attempt']} times"
            (output,) = task["outputs"]
            stored = server.tasks_files / "output" / str(task["id"]) / output["name"]
            assert stored.is_file() and stored.stat().st_size == output["size_bytes"]
            ran_by[task["worker_id"]] = ran_by.get(task["worker_id"], 0) + 1
        assert set(ran_by) == {"http-1", "http-2", "dbfs-1"}, ran_by
        for worker in workers[:2]:
            assert _files_under(worker.temp_files) == [], f"{worker.name} left temporary files"


def test_a_worker_killed_mid_task_loses_nothing(tmp_path: Path) -> None:
    with scratch_database("sqlite", tmp_path) as database_uri:
        server = Server(tmp_path / "server", database_uri, env={"VIX_TASK_LEASE_S": "2"}).wait_ready()
        doomed = WorkerProcess("doomed", tmp_path / "doomed", flows=["e2e_slow"], server=server,
                               env={"VIX_TASK_LEASE_S": "2"}).wait_registered(server)
        processes = [server, doomed]
        try:
            task_ids = server.create("e2e_slow", {"seconds": 2.0}, count=3)
            wait_until(lambda: server.task(task_ids[0])["status"] == "running"
                       and server.task(task_ids[0])["progress"] > 0, 60, "the first task running",
                       logs=processes)
            doomed.kill()
            rescuer = WorkerProcess("rescuer", tmp_path / "rescuer", flows=["e2e_slow"], server=server,
                                    env={"VIX_TASK_LEASE_S": "2"})
            processes.append(rescuer)
            tasks = _all_finished(server, 3, processes, timeout_s=90)
            assert rescuer.stop() == 0
        finally:
            server.stop()
        by_id = {task["id"]: task for task in tasks}
        first = by_id[task_ids[0]]
        assert first["worker_id"] == "rescuer" and first["attempt"] == 2
        for task in tasks:
            assert len(task["outputs"]) == 1, "no duplicate output from the killed run"
            assert task["worker_id"] == "rescuer"


def test_a_worker_cut_off_from_the_server_resumes(tmp_path: Path) -> None:
    with scratch_database("sqlite", tmp_path) as database_uri:
        server = Server(tmp_path / "server", database_uri).wait_ready()
        proxy = TcpProxy(server.port)
        worker = WorkerProcess("remote", tmp_path / "remote", flows=["e2e_red", "e2e_slow"], server=server,
                               env={"VIX_HOST": proxy.url})
        processes = [server, worker]
        try:
            worker.wait_registered(server)
            server.create("e2e_slow", {"seconds": 0.1}, count=10)
            server.create("e2e_red", count=20)
            wait_until(lambda: len(_tasks(server, "finished")) >= 5, 60, "a few tasks done", logs=processes)
            proxy.cut()
            time.sleep(2.0)
            assert worker.alive(), f"the worker died without its server:\n{worker.log()[-3000:]}"
            proxy.restore()
            tasks = _all_finished(server, 30, processes, timeout_s=120)
            assert worker.stop() == 0
        finally:
            proxy.close()
            server.stop()
        assert all(len(task["outputs"]) == 1 for task in tasks), "a retried upload duplicated a file"
        assert _files_under(worker.temp_files) == []


def test_a_restarted_server_loses_no_queued_task(tmp_path: Path) -> None:
    with scratch_database("postgresql", tmp_path) as database_uri:
        server = Server(tmp_path / "server", database_uri).wait_ready()
        task_ids = server.create("e2e_blue", count=12)
        assert server.stop() == 0
        server = Server(tmp_path / "server", database_uri).wait_ready()  # the same database and files
        worker = WorkerProcess("late", tmp_path / "late", flows=["e2e_blue"], server=server)
        try:
            tasks = _all_finished(server, len(task_ids), [server, worker], timeout_s=90)
            assert worker.stop() == 0
        finally:
            server.stop()
        assert sorted(task["id"] for task in tasks) == sorted(task_ids)


@pytest.mark.parametrize("mode", ["http", "dbfs"])
def test_sigterm_hands_the_running_task_back_and_exits_0(tmp_path: Path, mode: str) -> None:
    with scratch_database("sqlite", tmp_path) as database_uri:
        server = Server(tmp_path / "server", database_uri).wait_ready()
        options: dict[str, Any] = ({"server": server} if mode == "http"
                                   else {"database_uri": database_uri, "tasks_files": server.tasks_files})
        worker = WorkerProcess("busy", tmp_path / "busy", flows=["e2e_slow"], **options).wait_registered(server)
        try:
            (task_id,) = server.create("e2e_slow", {"seconds": 30.0})
            wait_until(lambda: server.task(task_id)["progress"] > 0, 60, "the task running on the executor",
                       logs=[server, worker])
            started = time.monotonic()
            assert worker.stop(signal.SIGTERM) == 0
            assert time.monotonic() - started < 20, "the worker did not interrupt its task"
            task = server.task(task_id)
            assert task["status"] == "pending" and task["attempt"] == 0, task
        finally:
            server.stop()
        if mode == "http":
            assert _files_under(worker.temp_files) == []


async def _task_events(url: str, run: Any) -> list[dict[str, Any]]:
    """``/vapi/events`` while ``run()`` (in a thread) queues a task; every event until that task ends."""
    seen: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{url}/vapi/events") as ws:
        assert (await ws.receive_json(timeout=10))["type"] == "subscribed"
        task_id = await asyncio.to_thread(run)
        while True:
            event = await ws.receive_json(timeout=30)
            seen.append(event)
            if event.get("task_id") == task_id and event["type"] in ("task_finished", "task_failed"):
                return seen


def test_a_database_workers_progress_reaches_the_servers_event_stream(tmp_path: Path) -> None:
    """A Database-FS worker writes straight to the database; the server still announces its task's start,
    progress and end (``server/external_changes.py``), and the worker's reports as ``worker_updated``."""
    with scratch_database("sqlite", tmp_path) as database_uri:
        server = Server(tmp_path / "server", database_uri).wait_ready()
        worker = WorkerProcess("db-worker", tmp_path / "db-worker", flows=["e2e_slow"], database_uri=database_uri,
                               tasks_files=server.tasks_files, env={"VIX_PROGRESS_INTERVAL_S": "0.1"})
        try:
            worker.wait_registered(server)
            seen = asyncio.run(_task_events(server.url, lambda: server.create("e2e_slow", {"seconds": 2.0})[0]))
        finally:
            assert worker.stop() == 0
            server.stop()
    task_id = next(e["task_id"] for e in seen if e["type"] == "task_queued")
    mine = [e for e in seen if e.get("task_id") == task_id]
    kinds = [e["type"] for e in mine]
    assert kinds[0] == "task_queued" and kinds[-1] == "task_finished", kinds
    assert "task_started" in kinds and kinds.index("task_started") in (1, 2), kinds  # claimed, perhaps, then started
    progress = [e["progress"] for e in mine if e["type"] == "task_progressed"]
    assert len(progress) >= 2 and progress == sorted(progress), progress
    assert all(e.get("external") for e in mine[1:]), "announced by the server's look at the database"
    assert any(e["type"] == "worker_updated" and e["worker_id"] == "db-worker" for e in seen), seen
