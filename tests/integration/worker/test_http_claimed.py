"""Server-mode workers and the ``claimed`` state: ``POST /vapi/worker/tasks/{id}/start`` over a real socket, and a
task held ahead by an HTTP worker that is cancelled at once and never run."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.integration.worker.conftest import eventually, queue_task, running_server, slow_graph
from visionatrix.errors import LeaseLost
from visionatrix.queue.models import TaskStatus
from visionatrix.worker.daemon import Worker, WorkerOptions
from visionatrix.worker.http_source import HttpSource

WORKER = "http-worker"


@contextlib.asynccontextmanager
async def http_source(server_url: str, temp_dir: Path):
    source = HttpSource(server_url, auth=None, temp_dir=temp_dir, retry_max_s=0.5)
    try:
        yield source
    finally:
        await source.close()


async def test_the_start_report_moves_a_claimed_task_to_running_and_is_refused_once_it_was_cancelled(
        tmp_path, registry):
    async with running_server(tmp_path, registry) as server, http_source(server.url, tmp_path / "w") as source:
        queue = server.services.queue
        first = await queue_task(queue, server.services.storage, "slow", slow_graph(4001))
        second = await queue_task(queue, server.services.storage, "slow", slow_graph(4002))
        run = await source.claim(WORKER, ["slow"], None, 0)
        ahead = await source.claim(WORKER, ["slow"], None, 0, ahead=True)
        assert run is not None and ahead is not None and (run.id, ahead.id) == (first, second)
        assert [(await queue.get(t)).status for t in (first, second)] == [TaskStatus.CLAIMED] * 2

        state = await source.start(run)

        assert state.cancel_requested is False
        started = await queue.get(first)
        assert started.status is TaskStatus.RUNNING and started.started_at is not None
        assert (await queue.get(second)).status is TaskStatus.CLAIMED
        assert (await queue.cancel(second)).status is TaskStatus.CANCELLED  # at once, while claimed
        with pytest.raises(LeaseLost):
            await source.start(ahead)
        assert (await queue.get(second)).status is TaskStatus.CANCELLED

        async with aiohttp.ClientSession() as session:  # the wire: a stale token is a 409 lease_lost
            async with session.post(f"{server.url}/vapi/worker/tasks/{second}/start",
                                    json={"lease_token": ahead.lease_token}) as response:
                assert response.status == 409 and (await response.json())["error"] == "lease_lost"
            async with session.post(f"{server.url}/vapi/worker/tasks/{first}/start", json={}) as response:
                assert response.status == 400, "the lease token is required"


async def test_a_task_held_ahead_by_an_http_worker_is_cancelled_at_once_and_never_run(tmp_path, registry,
                                                                                      executor: Any):
    async with running_server(tmp_path, registry) as server, http_source(server.url, tmp_path / "w") as source:
        queue = server.services.queue
        first = await queue_task(queue, server.services.storage, "slow", slow_graph(15000))
        ahead = await queue_task(queue, server.services.storage, "slow", slow_graph(15001))
        options = WorkerOptions(worker_id=WORKER, installed_flows=["slow"], lease_s=10.0, progress_interval_s=0.1,
                                claim_wait_s=1.0, retry_s=0.1)
        worker = Worker(source, executor, options)
        running = asyncio.create_task(worker.run(asyncio.Event(), burst=True))

        async def held_ahead() -> bool:
            current = worker.current
            return (current is not None and current.task.id == first
                    and (await queue.get(ahead)).status is TaskStatus.CLAIMED)

        await eventually(held_ahead, what="the second task held ahead, claimed")
        assert (await queue.get(first)).status is TaskStatus.RUNNING
        cancelled = await queue.cancel(ahead)
        assert (cancelled.status, cancelled.started_at) == (TaskStatus.CANCELLED, None)
        await asyncio.wait_for(running, timeout=30)
        assert (await queue.get(first)).status is TaskStatus.FINISHED
        assert (await queue.get(ahead)).status is TaskStatus.CANCELLED
        assert ahead not in executor.runs, "a task cancelled while claimed is dropped unrun"
        assert ("POST", f"/vapi/worker/tasks/{first}/start") in {(m, p) for _, m, p in server.recorder.requests}
