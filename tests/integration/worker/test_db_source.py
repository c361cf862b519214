"""``DatabaseSource`` on every backend: claims that wake on the in-process event and on PostgreSQL's NOTIFY, backoff
polling, files; and the pipelined loop over it (stop releases both held tasks, allowed flows, a cancelled task held
ahead)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.integration.conftest import Database, create_database, drop_database
from tests.integration.worker.conftest import eventually, held_by, queue_task, slow_graph
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.models import TaskStatus, WorkerRecord
from visionatrix.queue.wakeups import TaskWakeups
from visionatrix.storage.files import TaskStorage
from visionatrix.worker.daemon import Worker, WorkerOptions
from visionatrix.worker.db_source import DatabaseSource

GRAPH = {"1": {"class_type": "Noop", "inputs": {}}}
SLOW_POLL = {"poll_min_s": 5.0, "poll_max_s": 10.0}
"""Polling so slow that a pickup within a second can only come from a wake-up."""


def storage_in(tmp_path: Path) -> TaskStorage:
    return TaskStorage(tmp_path / "files", max_upload_bytes=10_000_000)


async def claim_after(source: DatabaseSource, create: Any, *, wait_s: float = 10.0) -> tuple[Any, float]:
    """Start a claim, then create a task; the claimed task and how long after the creation it was picked up."""
    claiming = asyncio.create_task(source.claim("w", ["f"], None, wait_s))
    await asyncio.sleep(0.2)
    created_at = time.monotonic()
    await create()
    task = await claiming
    return task, time.monotonic() - created_at


async def test_claim_wakes_on_the_in_process_event(queue: TaskQueue, tmp_path: Path) -> None:
    wakeup = asyncio.Event()
    source = DatabaseSource(queue, storage_in(tmp_path), mode="DEFAULT", wakeup=wakeup, **SLOW_POLL)

    async def create() -> None:
        await queue.create("f", GRAPH, {})
        wakeup.set()  # what the server does on task_queued

    task, picked_after_s = await claim_after(source, create)
    assert task is not None and task.flow == "f"
    assert picked_after_s < 1.0


async def test_claim_wakes_on_a_postgresql_notification(tmp_path: Path, postgresql_database: Database) -> None:
    database = await create_database("postgresql", tmp_path)
    server_engine, worker_engine = database.engine(), database.engine()
    server_queue, worker_queue = TaskQueue(server_engine), TaskQueue(worker_engine)
    try:
        async with TaskWakeups(worker_engine) as wakeups:
            await wakeups.wait(0.01)  # opens the listening connection (and says "maybe" once)
            source = DatabaseSource(worker_queue, storage_in(tmp_path), wakeups=wakeups, **SLOW_POLL)
            task, picked_after_s = await claim_after(source, lambda: server_queue.create("f", GRAPH, {}))
            assert task is not None
            assert picked_after_s < 1.0
            assert wakeups.received >= 1
    finally:
        for queue in (server_queue, worker_queue):
            await queue.aclose()
        for engine in (server_engine, worker_engine):
            await engine.dispose()
        await drop_database(database)


async def test_without_a_wake_up_the_claim_polls_and_gives_up_after_wait_s(queue: TaskQueue, tmp_path: Path) -> None:
    source = DatabaseSource(queue, storage_in(tmp_path), poll_min_s=0.01, poll_max_s=0.1)
    started = time.monotonic()
    assert await source.claim("w", ["f"], None, 0.3) is None
    assert time.monotonic() - started >= 0.3
    task, _ = await claim_after(source, lambda: queue.create("f", GRAPH, {}), wait_s=5.0)
    assert task is not None


async def test_a_cancelled_claim_leaves_no_task_running(queue: TaskQueue, tmp_path: Path) -> None:
    source = DatabaseSource(queue, storage_in(tmp_path), poll_min_s=0.001, poll_max_s=0.001)
    for _ in range(20):
        claiming = asyncio.create_task(source.claim("w", ["f"], None, 5.0))
        await asyncio.sleep(0.003)
        if not any(t.status == TaskStatus.PENDING for t in await queue.list(limit=5)):
            await queue.create("f", GRAPH, {})
        await asyncio.sleep(0.001 * (_ % 4))
        claiming.cancel()
        try:
            task = await claiming
        except asyncio.CancelledError:
            continue
        if task is not None:
            await queue.release(task.id, task.lease_token)
    assert await queue.list(status=TaskStatus.RUNNING) == []


async def test_prepare_empties_a_requeued_tasks_output_and_finish_records_outputs_with_their_node(
        queue: TaskQueue, tmp_path: Path) -> None:
    storage = storage_in(tmp_path)
    source = DatabaseSource(queue, storage)
    (task_id,) = await queue.create("f", GRAPH, {})
    (storage.output_dir(task_id) / "stale.png").write_bytes(b"from an earlier attempt")
    task = await source.claim("w", ["f"], None, 0)
    assert task is not None
    input_dir, output_dir = await source.prepare(task)
    assert (input_dir, output_dir) == (storage.input_dir(task_id), storage.output_dir(task_id))
    assert list(output_dir.iterdir()) == []
    (output_dir / "a.png").write_bytes(b"a")
    (output_dir / "sub").mkdir()
    (output_dir / "sub" / "b.txt").write_bytes(b"bb")
    state = await source.heartbeat(task, 40.0, "3")
    assert not state.cancel_requested and (await queue.get(task_id)).progress == 40.0
    await source.finish(task, {"3": 0.5}, [("a.png", "7"), ("sub/b.txt", None)])
    done = await queue.get(task_id)
    assert done.status == TaskStatus.FINISHED
    assert [(f.name, f.node_id, f.size_bytes) for f in done.files] == [("a.png", "7", 1), ("sub/b.txt", None, 2)]
    assert done.peak_vram_bytes is None


async def test_a_runs_gpu_memory_peak_is_stored_when_it_finishes_or_fails(queue: TaskQueue, tmp_path: Path,
                                                                         measured_executor: Any) -> None:
    storage = storage_in(tmp_path)
    finished = await queue_task(queue, storage, "slow", slow_graph(1))
    worker = Worker(DatabaseSource(queue, storage, poll_min_s=0.01, poll_max_s=0.1), measured_executor,
                    loop_options())
    assert await worker.run(asyncio.Event(), burst=True) == 1
    done = await queue.get(finished)
    assert (done.status, done.peak_vram_bytes) == (TaskStatus.FINISHED, measured_executor.PEAK)

    (failed,) = await queue.create("f", GRAPH, {})
    source = DatabaseSource(queue, storage)
    task = await source.claim("w", ["f"], None, 0)
    assert task is not None and task.id == failed
    await source.fail(task, node_id="1", class_type="Noop", message="CUDA out of memory", traceback=None,
                      peak_vram_bytes=2**33)
    assert (await queue.get(failed)).peak_vram_bytes == 2**33


# -- the loop over the database source ---------------------------------------------------------------------------


def loop_options(**overrides: Any) -> WorkerOptions:
    values: dict[str, Any] = {"worker_id": "w", "installed_flows": ["slow", "other"], "lease_s": 30.0,
                              "progress_interval_s": 0.1, "claim_wait_s": 1.0, "retry_s": 0.1}
    return WorkerOptions(**{**values, **overrides})


async def test_stop_releases_the_running_task_and_the_one_held_ahead(queue: TaskQueue, tmp_path: Path,
                                                                     executor: Any) -> None:
    storage = storage_in(tmp_path)
    ids = [await queue_task(queue, storage, "slow", slow_graph(12000 + i)) for i in range(3)]
    stop = asyncio.Event()
    worker = Worker(DatabaseSource(queue, storage, poll_min_s=0.01, poll_max_s=0.1), executor, loop_options())
    running = asyncio.create_task(worker.run(stop))

    async def two_held() -> bool:
        return len(await held_by(queue, "w")) == 2 and worker.current is not None

    await eventually(two_held, what="a running task and one held ahead")
    stop.set()
    assert await asyncio.wait_for(running, timeout=10) == 1
    assert [(await queue.get(t)).status for t in ids] == [TaskStatus.PENDING] * 3


async def test_claims_ask_only_for_the_flows_an_admin_allows(queue: TaskQueue, tmp_path: Path,
                                                             executor: Any) -> None:
    storage = storage_in(tmp_path)
    await queue.upsert_worker(WorkerRecord("w", "WORKER_DB", "cpu", ["slow", "other"], None,
                                           last_seen_at=datetime.now(UTC)))
    await queue.set_allowed_flows("w", ["other"])
    kept = [await queue_task(queue, storage, "slow", slow_graph(100 + i)) for i in range(2)]
    taken = [await queue_task(queue, storage, "other", slow_graph(200 + i)) for i in range(2)]
    worker = Worker(DatabaseSource(queue, storage, poll_min_s=0.01, poll_max_s=0.1), executor, loop_options())
    assert await worker.run(asyncio.Event(), burst=True) == 2
    assert [(await queue.get(t)).status for t in kept] == [TaskStatus.PENDING] * 2
    assert [(await queue.get(t)).status for t in taken] == [TaskStatus.FINISHED] * 2


async def test_a_task_cancelled_while_held_ahead_is_cancelled_without_running(tmp_path: Path, executor: Any,
                                                                             engine: Any) -> None:
    queue = TaskQueue(engine, lease_s=1.5)  # heartbeats every 0.5 s
    try:
        storage = storage_in(tmp_path)
        first = await queue_task(queue, storage, "slow", slow_graph(15000))
        ahead = await queue_task(queue, storage, "slow", slow_graph(15001))
        worker = Worker(DatabaseSource(queue, storage, poll_min_s=0.01, poll_max_s=0.1), executor,
                        loop_options(lease_s=1.5))
        running = asyncio.create_task(worker.run(asyncio.Event(), burst=True))

        async def held_ahead() -> bool:
            current = worker.current
            return current is not None and current.task.id == first and ahead in await held_by(queue, "w")

        await eventually(held_ahead, what="the second task held ahead")
        assert [t.status for t in (await queue.get(first), await queue.get(ahead))] == [
            TaskStatus.RUNNING, TaskStatus.CLAIMED], "the task held ahead is not running yet"
        cancelled = await queue.cancel(ahead)
        assert (cancelled.status, cancelled.started_at) == (TaskStatus.CANCELLED, None), "at once, never started"
        await asyncio.wait_for(running, timeout=20)
        assert (await queue.get(first)).status == TaskStatus.FINISHED
        assert (await queue.get(ahead)).status == TaskStatus.CANCELLED
        assert ahead not in executor.runs
    finally:
        await queue.aclose()


async def test_a_task_held_ahead_shows_claimed_and_its_run_is_timed_from_its_start(queue: TaskQueue, tmp_path: Path,
                                                                                    executor: Any) -> None:
    """The second task waits in the worker while the first runs: it shows ``claimed`` meanwhile, and its duration
    (``finished_at - started_at``) is its own run, not the wait."""
    storage = storage_in(tmp_path)
    first, ahead = [await queue_task(queue, storage, "slow", slow_graph(16000 + i)) for i in range(2)]
    worker = Worker(DatabaseSource(queue, storage, poll_min_s=0.01, poll_max_s=0.1), executor, loop_options())
    running = asyncio.create_task(worker.run(asyncio.Event(), burst=True))
    shown: set[tuple[TaskStatus, TaskStatus]] = set()
    while not running.done():
        shown.add(((await queue.get(first)).status, (await queue.get(ahead)).status))
        await asyncio.sleep(0.01)
    assert await running == 2
    assert (TaskStatus.RUNNING, TaskStatus.CLAIMED) in shown, shown
    done = await queue.get(ahead)
    assert done.status is TaskStatus.FINISHED and done.started_at is not None and done.finished_at is not None
    first_run_s = executor.runs[first][1] - executor.runs[first][0]
    own_run_s = executor.runs[ahead][1] - executor.runs[ahead][0]
    shown_s = (done.finished_at - done.started_at).total_seconds()
    assert own_run_s - 0.05 <= shown_s < own_run_s + first_run_s / 2, (shown_s, own_run_s, first_run_s)


async def test_a_woken_claim_that_finds_nothing_answers_at_once_so_new_flows_are_asked_for(
        queue: TaskQueue, tmp_path: Path) -> None:
    wakeup = asyncio.Event()
    source = DatabaseSource(queue, storage_in(tmp_path), mode="DEFAULT", wakeup=wakeup, **SLOW_POLL)

    async def create_of_a_flow_not_asked_for() -> None:
        await queue.create("installed-meanwhile", GRAPH, {})
        wakeup.set()

    task, answered_after_s = await claim_after(source, create_of_a_flow_not_asked_for)
    assert task is None and answered_after_s < 1.0
    assert await source.claim("w", ["f", "installed-meanwhile"], None, 0) is not None


async def test_a_woken_claim_made_ahead_leaves_the_task_to_an_idle_worker(queue: TaskQueue, tmp_path: Path) -> None:
    storage = storage_in(tmp_path)
    busy_wakeup, idle_wakeup = asyncio.Event(), asyncio.Event()
    busy = DatabaseSource(queue, storage, wakeup=busy_wakeup, **SLOW_POLL)
    idle = DatabaseSource(queue, storage, wakeup=idle_wakeup, **SLOW_POLL)
    ahead = asyncio.create_task(busy.claim("busy", ["f"], None, 10.0, ahead=True))
    await asyncio.sleep(0.1)
    waiting = asyncio.create_task(idle.claim("idle", ["f"], None, 10.0))
    await asyncio.sleep(0.2)
    (task_id,) = await queue.create("f", GRAPH, {})
    busy_wakeup.set()  # the busy worker is told first
    idle_wakeup.set()
    got = await asyncio.wait_for(waiting, 5)
    assert got is not None and got.id == task_id
    assert await asyncio.wait_for(ahead, 5) is None  # woken, it found nothing and says so


async def test_a_polling_claim_made_ahead_polls_slowly(queue: TaskQueue, tmp_path: Path) -> None:
    storage = storage_in(tmp_path)
    busy = DatabaseSource(queue, storage, poll_min_s=0.05, poll_max_s=1.5)
    idle = DatabaseSource(queue, storage, poll_min_s=0.05, poll_max_s=1.5)
    ahead = asyncio.create_task(busy.claim("busy", ["f"], None, 10.0, ahead=True))
    waiting = asyncio.create_task(idle.claim("idle", ["f"], None, 10.0))
    await asyncio.sleep(0.3)
    (task_id,) = await queue.create("f", GRAPH, {})
    got = await asyncio.wait_for(waiting, 5)
    assert got is not None and got.id == task_id
    ahead.cancel()
    await asyncio.gather(ahead, return_exceptions=True)


async def test_a_prompt_is_claimed_only_by_a_worker_with_all_its_node_types(queue: TaskQueue, tmp_path: Path) -> None:
    from visionatrix.queue.prompts import Prompt, PromptTasks

    prompts = PromptTasks(queue)
    task_id = await prompts.create(Prompt(prompt_id="0f8fad5b-d9cb-469f-a165-70867728950e", graph=GRAPH,
                                          node_types=frozenset({"Noop", "Other"})))
    lacking = DatabaseSource(queue, storage_in(tmp_path), node_types={"Noop"})
    assert await lacking.claim("w1", [], None, 0) is None
    unaware = DatabaseSource(queue, storage_in(tmp_path))
    assert await unaware.claim("w2", ["f"], None, 0) is None
    able = DatabaseSource(queue, storage_in(tmp_path), node_types={"Noop", "Other", "More"})
    task = await able.claim("w3", [], None, 0)
    assert task is not None and task.id == task_id
    found = await prompts.get("0f8fad5b-d9cb-469f-a165-70867728950e")
    assert found is not None and found.task.worker_id == "w3"
