"""A Server-mode worker (``HttpSource``) against the real server application over a real socket: downloads,
uploads, pipelining, shutdown, credentials, a server that is down, a dropped upload."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.integration.worker.conftest import (
    Recorder,
    Server,
    eventually,
    free_port,
    held_by,
    queue_task,
    running_server,
    server_services,
    slow_graph,
)
from visionatrix.queue.models import TaskStatus
from visionatrix.worker import http_source as http_source_module
from visionatrix.worker.daemon import Worker, WorkerOptions
from visionatrix.worker.http_source import HttpSource
from visionatrix.worker.http_transfer import Unauthorized

WORKER = "http-worker"


def options(**overrides: Any) -> WorkerOptions:
    values: dict[str, Any] = {"worker_id": WORKER, "installed_flows": ["slow", "other"], "lease_s": 10.0,
                              "progress_interval_s": 0.1, "claim_wait_s": 1.0, "retry_s": 0.1}
    return WorkerOptions(**{**values, **overrides})


@contextlib.asynccontextmanager
async def http_source(server_url: str, temp_dir: Path, **kwargs: Any):
    source = HttpSource(server_url, auth=kwargs.pop("auth", None), temp_dir=temp_dir,
                        retry_max_s=kwargs.pop("retry_max_s", 0.5), **kwargs)
    try:
        yield source
    finally:
        await source.close()


async def test_burst_run_downloads_inputs_uploads_outputs_and_leaves_no_temporary_files(tmp_path, registry,
                                                                                        executor):
    async with running_server(tmp_path, registry) as server, http_source(server.url, tmp_path / "w") as source:
        services = server.services
        ids = [await queue_task(services.queue, services.storage, "slow", slow_graph(3000 + i)) for i in range(2)]
        ran = await Worker(source, executor, options()).run(asyncio.Event(), burst=True)
        assert ran == 2
        for task_id in ids:
            task = await services.queue.get(task_id)
            assert task.status == TaskStatus.FINISHED and task.progress == 100
            outputs = [f for f in task.files if f.kind == "output"]
            assert [(f.name, f.node_id) for f in outputs] == [("slow_00001_.png", "5")]
            stored = services.storage.resolve(task_id, "output", "slow_00001_.png").read_bytes()
            assert outputs[0].sha256 == hashlib.sha256(stored).hexdigest()
            assert set(task.timings) >= {"3", "5"}
            assert task.peak_vram_bytes is None  # a CPU run: not measured, not sent
        assert list((tmp_path / "w").iterdir()) == []
        (worker,) = await services.queue.list_workers()
        assert (worker.worker_id, worker.mode, worker.current_task_id) == (WORKER, "WORKER_HTTP", None)


async def test_the_runs_gpu_memory_peak_reaches_the_server_with_the_finish(tmp_path, registry,
                                                                          measured_executor):
    async with running_server(tmp_path, registry) as server, http_source(server.url, tmp_path / "w") as source:
        services = server.services
        task_id = await queue_task(services.queue, services.storage, "slow", slow_graph(1))
        assert await Worker(source, measured_executor, options()).run(asyncio.Event(), burst=True) == 1
        task = await services.queue.get(task_id)
        assert (task.status, task.peak_vram_bytes) == (TaskStatus.FINISHED, measured_executor.PEAK)

        (failed,) = await services.queue.create("other", {}, {})
        claimed = await source.claim(WORKER, ["other"], None, 0)
        assert claimed is not None and claimed.id == failed
        await source.fail(claimed, node_id=None, class_type=None, message="CUDA out of memory", traceback=None,
                          peak_vram_bytes=2**33)
        assert (await services.queue.get(failed)).peak_vram_bytes == 2**33


async def test_next_task_is_claimed_and_downloaded_while_the_previous_runs_and_finishing_overlaps_the_next_run(
        tmp_path, registry, executor):
    async with running_server(tmp_path, registry) as server, http_source(server.url, tmp_path / "w") as source:
        services = server.services
        first = await queue_task(services.queue, services.storage, "slow", slow_graph(3000))
        second = await queue_task(services.queue, services.storage, "slow", slow_graph(3001))
        server.recorder.hold[("PUT", f"/vapi/worker/tasks/{first}/outputs/")] = 0.5  # a slow upload
        await Worker(source, executor, options()).run(asyncio.Event(), burst=True)

        first_started, first_ended = executor.runs[first]
        second_started, _ = executor.runs[second]
        second_download = server.recorder.first("GET", f"/vapi/worker/tasks/{second}/inputs/image.jpg")
        assert first_started < second_download < first_ended, "the next task's inputs came while the first ran"
        first_finish = server.recorder.first("POST", f"/vapi/worker/tasks/{first}/finish")
        assert second_started < first_finish, "the next run started before the first task's results were stored"
        assert [(await services.queue.get(t)).status for t in (first, second)] == [TaskStatus.FINISHED] * 2


async def test_the_worker_holds_one_task_ahead_while_the_previous_one_concludes(tmp_path, registry, executor):
    async with running_server(tmp_path, registry) as server, http_source(server.url, tmp_path / "w") as source:
        services = server.services
        ids = [await queue_task(services.queue, services.storage, "slow", slow_graph(3000 + i)) for i in range(4)]
        server.recorder.hold[("PUT", "/vapi/worker/tasks/")] = 0.2  # conclusions overlap the next runs
        held: list[int] = []
        worker = asyncio.create_task(Worker(source, executor, options()).run(asyncio.Event(), burst=True))
        while not worker.done():
            held.append(len(await held_by(services.queue, WORKER)))
            await asyncio.sleep(0.01)
        assert await worker == 4
        assert max(held) == 3, f"held at once (N-1 concluding, N running, N+1 ahead): {sorted(set(held))}"
        assert {(await services.queue.get(t)).status for t in ids} == {TaskStatus.FINISHED}


async def test_stop_releases_the_running_task_and_the_one_claimed_ahead(tmp_path, registry, executor):
    async with running_server(tmp_path, registry) as server, http_source(server.url, tmp_path / "w") as source:
        services = server.services
        ids = [await queue_task(services.queue, services.storage, "slow", slow_graph(9000 + i)) for i in range(3)]
        stop = asyncio.Event()
        worker = Worker(source, executor, options())
        running = asyncio.create_task(worker.run(stop))

        async def two_held() -> bool:
            return len(await held_by(services.queue, WORKER)) == 2 and worker.current is not None

        await eventually(two_held, what="a running task and one claimed ahead")
        stop.set()
        await asyncio.wait_for(running, timeout=10)
        statuses = [(await services.queue.get(t)).status for t in ids]
        assert statuses == [TaskStatus.PENDING] * 3
        assert [t.attempt for t in [await services.queue.get(i) for i in ids]] == [0, 0, 0]
        assert list((tmp_path / "w").iterdir()) == []


async def test_leftover_task_folders_are_removed_when_the_source_starts(tmp_path):
    temp_dir = tmp_path / "w"
    (temp_dir / "41" / "input").mkdir(parents=True)
    (temp_dir / "41" / "input" / "image.jpg").write_bytes(b"from a crash")
    (temp_dir / "42" / "output").mkdir(parents=True)
    (temp_dir / "notes.txt").write_text("not ours")
    async with http_source("http://127.0.0.1:9", temp_dir):
        assert sorted(p.name for p in temp_dir.iterdir()) == ["notes.txt"]


async def test_wrong_credentials_stop_the_worker_with_a_clear_error(tmp_path, registry, executor):
    async with running_server(tmp_path, registry, worker_auth="vix:secret") as server:
        await queue_task(server.services.queue, server.services.storage, "slow", slow_graph())
        async with http_source(server.url, tmp_path / "w", auth="vix:wrong") as source:
            with pytest.raises(Unauthorized, match="WORKER_AUTH"):
                await asyncio.wait_for(Worker(source, executor, options()).run(asyncio.Event()), timeout=10)
        async with http_source(server.url, tmp_path / "w", auth="vix:secret") as source:
            assert await Worker(source, executor, options()).run(asyncio.Event(), burst=True) == 1


async def test_a_token_is_sent_as_bearer(tmp_path, registry, executor):
    async with running_server(tmp_path, registry, worker_auth="s3cr3t-token") as server:
        task_id = await queue_task(server.services.queue, server.services.storage, "slow", slow_graph())
        async with http_source(server.url, tmp_path / "w", auth="s3cr3t-token") as source:
            assert await Worker(source, executor, options()).run(asyncio.Event(), burst=True) == 1
        assert (await server.services.queue.get(task_id)).status == TaskStatus.FINISHED


async def test_a_server_that_is_down_is_retried_and_the_worker_resumes_when_it_is_back(tmp_path, registry,
                                                                                      executor):
    async with server_services(tmp_path, registry) as services:
        task_id = await queue_task(services.queue, services.storage, "slow", slow_graph())
        server = Server(services, Recorder(), port=free_port())
        async with http_source(server.url, tmp_path / "w") as source:
            stop = asyncio.Event()
            worker = asyncio.create_task(Worker(source, executor, options()).run(stop))
            await asyncio.sleep(1.5)  # the first report and claims find nobody listening
            assert not worker.done(), "the worker must not give up while the server is down"
            await server.start()
            try:
                async def finished() -> bool:
                    return (await services.queue.get(task_id)).status == TaskStatus.FINISHED

                await eventually(finished, what="the task to be finished once the server is back")
                stop.set()
                assert await asyncio.wait_for(worker, timeout=10) == 1
            finally:
                await server.stop()



class DroppingProxy:
    """A TCP proxy to the server that cuts the connection carrying the first output upload just before the
    server's answer reaches the worker (the server has stored the file by then)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.dropped = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> DroppingProxy:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        uploading = asyncio.Event()

        def close() -> None:
            writer.close()
            up_writer.close()

        async def to_server() -> None:
            while data := await reader.read(65536):
                if b"PUT /vapi/worker/tasks/" in data:
                    uploading.set()
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def to_worker() -> None:
            while data := await up_reader.read(65536):
                if uploading.is_set() and not self.dropped:
                    self.dropped += 1
                    close()
                    return
                uploading.clear()
                writer.write(data)
                await writer.drain()
            writer.close()

        pipes = [asyncio.create_task(to_server()), asyncio.create_task(to_worker())]
        self._pipes.update(pipes)
        await asyncio.gather(*pipes, return_exceptions=True)
        self._pipes.difference_update(pipes)
        close()


async def test_a_dropped_upload_is_sent_again_and_replaces_the_file_without_a_duplicate(tmp_path, registry, executor):
    async with running_server(tmp_path, registry) as server, DroppingProxy(server.port) as proxy, \
            http_source(f"http://127.0.0.1:{proxy.port}", tmp_path / "w") as source:
        services = server.services
        task_id = await queue_task(services.queue, services.storage, "slow", slow_graph())
        assert await Worker(source, executor, options()).run(asyncio.Event(), burst=True) == 1

        assert proxy.dropped == 1
        uploads = [path for _, method, path in server.recorder.requests if method == "PUT" and "/outputs/" in path]
        assert uploads == [f"/vapi/worker/tasks/{task_id}/outputs/slow_00001_.png"] * 2
        task = await services.queue.get(task_id)
        assert task.status == TaskStatus.FINISHED
        assert [f.name for f in task.files if f.kind == "output"] == ["slow_00001_.png"]
        folder = services.storage.root / "output" / str(task_id)
        assert sorted(p.name for p in folder.iterdir()) == ["slow_00001_.png"]


async def test_a_lease_taken_over_by_another_run_interrupts_the_run_and_drops_its_result(tmp_path, registry,
                                                                                        executor):
    async with running_server(tmp_path, registry) as server, http_source(server.url, tmp_path / "w") as source:
        queue = server.services.queue
        graph = slow_graph(16000)  # about 3.5 s with the second GrowMask
        graph["6"] = {"class_type": "GrowMask", "inputs": {"mask": ["3", 0], "expand": -16000, "tapered_corners": True}}
        graph["4"]["inputs"]["mask"] = ["6", 0]
        task_id = await queue_task(queue, server.services.storage, "slow", graph)
        stop = asyncio.Event()
        # no claim ahead: its re-sent claims could take the requeued task before "other-worker" does
        worker = Worker(source, executor, options(claim_ahead=False))
        running = asyncio.create_task(worker.run(stop))
        await eventually(lambda: _running_here(worker, task_id), what="the task to run")
        assert await queue.requeue_expired(datetime.now(UTC) + timedelta(hours=1)) == 1
        other = await queue.claim_next("other-worker", ["slow"])
        assert other is not None and other.id == task_id

        async def interrupted() -> bool:
            return task_id in executor.runs

        await eventually(interrupted, what="the run to be interrupted")
        started, ended = executor.runs[task_id]
        stop.set()
        await asyncio.wait_for(running, timeout=10)
        task = await queue.get(task_id)
        assert (task.status, task.worker_id) == (TaskStatus.CLAIMED, "other-worker")  # its new run, not started
        assert [f for f in task.files if f.kind == "output"] == []
        assert ended - started < 2.5, "the run went on after its lease was lost"
        assert list((tmp_path / "w").iterdir()) == []


async def _running_here(worker: Worker, task_id: int) -> bool:
    return worker.current is not None and worker.current.task.id == task_id and worker.current.tracker.changed


async def test_a_claim_cancelled_while_its_reply_is_on_the_way_gives_the_task_back_at_once(tmp_path, registry):
    async with running_server(tmp_path, registry) as server, http_source(server.url, tmp_path / "w") as source:
        services = server.services
        task_id = await queue_task(services.queue, services.storage, "slow", slow_graph())
        server.recorder.hold_reply[("POST", "/vapi/worker/claim")] = 2.0
        claiming = asyncio.create_task(source.claim(WORKER, ["slow"], None, 0))

        async def claimed_on_the_server() -> bool:
            return await held_by(services.queue, WORKER) == [task_id]

        await eventually(claimed_on_the_server, what="the server's claim")
        claiming.cancel()  # the worker gives up before the reply reaches it
        with pytest.raises(asyncio.CancelledError):
            await claiming

        async def pending() -> bool:
            return (await services.queue.get(task_id)).status == TaskStatus.PENDING

        await eventually(pending, timeout_s=3.0, what="the withdrawn claim's task back to pending")
        assert any(path == "/vapi/worker/claim/withdraw" for _, _, path in server.recorder.requests)


async def test_a_claim_retried_after_a_lost_reply_gets_the_same_task(tmp_path, registry, monkeypatch):
    monkeypatch.setattr(http_source_module, "CLAIM_MARGIN_S", 0.5)
    async with running_server(tmp_path, registry) as server, http_source(server.url, tmp_path / "w") as source:
        services = server.services
        first = await queue_task(services.queue, services.storage, "slow", slow_graph(3001))
        second = await queue_task(services.queue, services.storage, "slow", slow_graph(3002))
        server.recorder.hold_reply[("POST", "/vapi/worker/claim")] = 3.0  # past the client's timeout: lost
        claiming = asyncio.create_task(source.claim(WORKER, ["slow"], None, 0))

        async def claimed_on_the_server() -> bool:
            return await held_by(services.queue, WORKER) == [first]

        await eventually(claimed_on_the_server, what="the server's claim")
        server.recorder.hold_reply.clear()  # the retry's reply arrives
        task = await asyncio.wait_for(claiming, 10)
        assert task is not None and task.id == first
        assert await held_by(services.queue, WORKER) == [first]
        assert (await services.queue.get(second)).status == TaskStatus.PENDING


async def test_a_comfyui_prompt_goes_to_a_server_mode_worker_that_has_its_node_types(tmp_path, registry, executor):
    from visionatrix.queue.prompts import Prompt

    async with running_server(tmp_path, registry) as server, http_source(server.url, tmp_path / "w") as source:
        services = server.services
        assert services.prompts is not None
        graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
                 "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "p"}}}
        task_id = await services.prompts.create(Prompt(prompt_id="7c9e6679-7425-40de-944b-e07fc1f90ae7",
                                                       graph=graph, node_types=frozenset({"EmptyImage", "SaveImage"})))
        strange = await services.prompts.create(Prompt(prompt_id="16fd2706-8baf-433b-82eb-8c7fada847da",
                                                       graph=graph, node_types=frozenset({"NotHere"})))
        ran = await Worker(source, executor, options(installed_flows=[])).run(asyncio.Event(), burst=True)
        assert ran == 1
        finished = await services.queue.get(task_id)
        assert finished.status == TaskStatus.FINISHED and [f.name for f in finished.files if f.kind == "output"]
        assert (await services.queue.get(strange)).status == TaskStatus.PENDING
