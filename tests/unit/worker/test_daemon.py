"""The worker loop against an in-memory task source and an executor stand-in: what it does with each way a run or a
call can end, and the shape of its pipeline."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from visionatrix.errors import Interrupted, InvalidGraph, LeaseLost, NodeFailed, VisionatrixError
from visionatrix.executor import events
from visionatrix.queue.models import ClaimedTask, LeaseState, WorkerRecord
from visionatrix.worker import daemon
from visionatrix.worker.daemon import Worker, WorkerOptions
from visionatrix.worker.source import SourceStopped


def task(task_id: int, flow: str = "f", **graph: Any) -> ClaimedTask:
    return ClaimedTask(id=task_id, flow=flow, graph=graph, params={}, lease_token=f"t{task_id}",
                       lease_expires_at=datetime.now(UTC) + timedelta(seconds=30), attempt=1)


@dataclass
class MemorySource:
    """Tasks from a list; every call is noted as ``(monotonic time, call, task id)``."""

    tasks: list[ClaimedTask]
    tmp: Path
    mode: str = "TEST"
    allowed: list[str] | None = None
    commands: list[dict[str, Any]] = field(default_factory=list)
    """Admin commands handed out with the next report."""
    calls: list[tuple[float, str, int | None]] = field(default_factory=list)
    outcomes: dict[int, tuple[str, Any]] = field(default_factory=dict)
    lost: set[int] = field(default_factory=set)
    """Tasks whose heartbeats answer ``LeaseLost``."""
    cancel: set[int] = field(default_factory=set)
    finish_s: float = 0.0
    finish_error: Exception | None = None
    prepare_error: dict[int, Exception] = field(default_factory=dict)
    claim_error: Exception | None = None
    claimed_flows: list[list[str]] = field(default_factory=list)
    claims: list[tuple[float, bool]] = field(default_factory=list)
    """Every claim call: when it began, and whether it was made ahead."""
    idle_wait_s: float = 0.01
    """How long a claim that finds no task waits (at most its ``wait_s``)."""
    concluding: int = 0
    most_concluding: int = 0
    peaks: dict[int, int | None] = field(default_factory=dict)
    """The GPU memory peak each finish carried."""

    def note(self, call: str, task_id: int | None = None) -> None:
        self.calls.append((time.monotonic(), call, task_id))

    async def claim(self, worker_id: str, flows: Any, last_flow: str | None, wait_s: float, *,
                    ahead: bool = False) -> ClaimedTask | None:
        if self.claim_error is not None:
            raise self.claim_error
        self.claims.append((time.monotonic(), ahead))
        self.claimed_flows.append(list(flows))
        for candidate in self.tasks:
            if candidate.flow in flows:
                self.tasks.remove(candidate)
                self.note("claim", candidate.id)
                return candidate
        await asyncio.sleep(min(wait_s, self.idle_wait_s))
        return None

    async def prepare(self, task: ClaimedTask) -> tuple[Path, Path]:
        self.note("prepare", task.id)
        if task.id in self.prepare_error:
            raise self.prepare_error[task.id]
        folders = self.tmp / str(task.id) / "input", self.tmp / str(task.id) / "output"
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        return folders

    async def heartbeat(self, task: ClaimedTask, progress: float | None, current_node: str | None) -> LeaseState:
        self.note("heartbeat", task.id)
        if task.id in self.lost:
            raise LeaseLost(task.id)
        return LeaseState(cancel_requested=task.id in self.cancel)

    async def _conclude(self, task: ClaimedTask, outcome: str, detail: Any = None) -> None:
        self.concluding += 1
        self.most_concluding = max(self.most_concluding, self.concluding)
        try:
            await asyncio.sleep(self.finish_s if outcome == "finished" else 0)
            if outcome == "finished" and self.finish_error is not None:
                raise self.finish_error
            self.outcomes[task.id] = (outcome, detail)
            self.note(outcome, task.id)
        finally:
            self.concluding -= 1

    async def finish(self, task: ClaimedTask, timings: dict[str, float], outputs: list[tuple[str, str | None]], *,
                     peak_vram_bytes: int | None = None, temps: list[tuple[str, str | None]] = ()) -> None:
        self.peaks[task.id] = peak_vram_bytes
        await self._conclude(task, "finished", outputs)

    async def fail(self, task: ClaimedTask, **error: Any) -> None:
        await self._conclude(task, "failed", error)

    async def cancelled(self, task: ClaimedTask) -> None:
        await self._conclude(task, "cancelled")

    async def release(self, task: ClaimedTask) -> None:
        await self._conclude(task, "released")

    async def report(self, record: WorkerRecord) -> list[str] | None:
        self.note("report")
        return self.allowed

    async def take_commands(self, worker_id: str) -> list[dict[str, Any]]:
        commands, self.commands = self.commands, []
        return commands

    async def cleanup(self, task: ClaimedTask) -> None:
        self.note("cleanup", task.id)

    async def close(self) -> None:
        pass


class StandInExecutor:
    """Runs a task's "graph": ``sleep_s``, then writes ``outputs`` (and reports ``peak`` as its GPU memory peak);
    ``raise`` makes it fail instead."""

    device = "cpu"

    def __init__(self) -> None:
        self.interrupted = asyncio.Event()
        self.runs: dict[int, tuple[float, float]] = {}

    def interrupt(self) -> None:
        self.interrupted.set()

    async def execute(self, graph: dict[str, Any], *, prompt_id: str, on_event: Any, input_dir: Path,
                      output_dir: Path, extra_data: Any, temp_dir: Path | None = None) -> events.ExecutionResult:
        self.interrupted.clear()
        started = time.monotonic()
        try:
            on_event(events.ExecutionStarted(prompt_id, 1))
            try:
                await asyncio.wait_for(self.interrupted.wait(), timeout=graph.get("sleep_s", 0.0))
                raise Interrupted()
            except TimeoutError:
                pass
            if "raise" in graph:
                raise graph["raise"]
            ui = {}
            for node_id, name in graph.get("outputs", []):
                (output_dir / name).write_bytes(b"x")
                ui[node_id] = {"images": [{"filename": name, "subfolder": "", "type": "output"}]}
            return events.ExecutionResult(prompt_id, ui=ui, timings_s={"1": 0.01}, peak_vram_bytes=graph.get("peak"))
        finally:
            self.runs[int(prompt_id)] = (started, time.monotonic())


def make_worker(source: MemorySource, executor: StandInExecutor | None = None, **overrides: Any) -> Worker:
    values: dict[str, Any] = {"worker_id": "w", "installed_flows": ["f", "g"], "lease_s": 0.3,
                              "progress_interval_s": 0.02, "claim_wait_s": 0.05, "retry_s": 0.01}
    return Worker(source, executor or StandInExecutor(), WorkerOptions(**{**values, **overrides}))  # type: ignore[arg-type]


async def test_outputs_are_finished_with_the_node_that_wrote_them(tmp_path):
    source = MemorySource([task(1, outputs=[("9", "a.png")])], tmp_path)
    (tmp_path / "1" / "output").mkdir(parents=True)
    (tmp_path / "1" / "output" / "unclaimed.txt").write_bytes(b"written by no output node")
    assert await make_worker(source).run(asyncio.Event(), burst=True) == 1
    assert source.outcomes[1] == ("finished", [("a.png", "9"), ("unclaimed.txt", None)])
    assert ("cleanup", 1) in [(c, t) for _, c, t in source.calls]


async def test_a_failing_node_fails_the_task_with_node_id_class_and_message(tmp_path):
    failure = NodeFailed("4", "ImageCrop", ValueError("x out of range"))
    source = MemorySource([task(1, **{"raise": failure})], tmp_path)
    await make_worker(source).run(asyncio.Event(), burst=True)
    outcome, error = source.outcomes[1]
    assert outcome == "failed"
    assert (error["node_id"], error["class_type"]) == ("4", "ImageCrop") and "x out of range" in error["message"]


async def test_the_runs_gpu_memory_peak_goes_with_its_results(tmp_path):
    source = MemorySource([task(1, peak=12345), task(2)], tmp_path)
    assert await make_worker(source).run(asyncio.Event(), burst=True) == 2
    assert source.peaks == {1: 12345, 2: None}


async def test_results_that_cannot_be_stored_fail_the_task_with_the_runs_peak(tmp_path):
    source = MemorySource([task(1, peak=12345)], tmp_path, finish_error=VisionatrixError("413"))
    await make_worker(source).run(asyncio.Event(), burst=True)
    outcome, error = source.outcomes[1]
    assert outcome == "failed" and error["peak_vram_bytes"] == 12345


async def test_a_node_failure_on_a_gpu_reports_the_peak_of_its_run(tmp_path, monkeypatch):
    measured: list[str] = []

    def peak(device: str) -> int | None:
        measured.append(device)
        return 4321 if device.startswith("cuda") else None

    monkeypatch.setattr(daemon.devices, "peak_vram_bytes", peak)
    failure = NodeFailed("4", "ImageCrop", ValueError("x out of range"))
    invalid = InvalidGraph({"message": "invalid prompt"}, {})
    executor = StandInExecutor()
    executor.device = "cuda:0"
    source = MemorySource([task(1, **{"raise": failure}), task(2, **{"raise": invalid})], tmp_path)
    await make_worker(source, executor).run(asyncio.Event(), burst=True)
    assert source.outcomes[1][1]["peak_vram_bytes"] == 4321
    assert "peak_vram_bytes" not in source.outcomes[2][1]  # refused before it ran: nothing was measured
    assert measured == ["cuda:0"]


async def test_an_invalid_graph_fails_the_task_with_every_issue(tmp_path):
    invalid = InvalidGraph({"message": "invalid prompt"}, {"2": {"class_type": "X", "errors": [
        {"message": "missing input", "details": "image", "extra_info": {"input_name": "image"}}]}})
    source = MemorySource([task(1, **{"raise": invalid})], tmp_path)
    await make_worker(source).run(asyncio.Event(), burst=True)
    outcome, error = source.outcomes[1]
    assert outcome == "failed" and error["node_id"] is None
    assert "node 2 (X) input 'image': missing input" in error["message"]


async def test_a_lost_lease_interrupts_the_run_and_drops_its_result(tmp_path):
    source = MemorySource([task(1, sleep_s=5.0, outputs=[("9", "a.png")])], tmp_path, lost={1})
    started = time.monotonic()
    await make_worker(source).run(asyncio.Event(), burst=True)
    assert time.monotonic() - started < 4.0, "the run was not interrupted"
    assert 1 not in source.outcomes
    assert ("cleanup", 1) in [(c, t) for _, c, t in source.calls]


async def test_a_cancel_interrupts_the_run_and_reports_it_cancelled(tmp_path):
    source = MemorySource([task(1, sleep_s=5.0)], tmp_path, cancel={1})
    await make_worker(source).run(asyncio.Event(), burst=True)
    assert source.outcomes[1] == ("cancelled", None)


async def test_results_that_cannot_be_stored_fail_the_task_with_the_reason(tmp_path):
    source = MemorySource([task(1, outputs=[("9", "a.png")])], tmp_path, finish_error=VisionatrixError("413"))
    await make_worker(source).run(asyncio.Event(), burst=True)
    outcome, error = source.outcomes[1]
    assert outcome == "failed" and error["message"] == "storing the results failed: 413"


async def test_inputs_that_cannot_be_prepared_fail_the_task_and_the_next_one_runs(tmp_path):
    source = MemorySource([task(1), task(2)], tmp_path, prepare_error={1: VisionatrixError("404 image.jpg")})
    assert await make_worker(source).run(asyncio.Event(), burst=True) == 1
    assert source.outcomes[1][0] == "failed" and "404 image.jpg" in source.outcomes[1][1]["message"]
    assert source.outcomes[2][0] == "finished"


async def test_one_conclusion_at_a_time_while_the_next_task_runs(tmp_path):
    source = MemorySource([task(i, sleep_s=0.1) for i in range(1, 5)], tmp_path, finish_s=0.15)
    executor = StandInExecutor()
    assert await make_worker(source, executor).run(asyncio.Event(), burst=True) == 4
    assert source.most_concluding == 1
    finished_at = {t: at for at, call, t in source.calls if call == "finished"}
    assert executor.runs[2][0] < finished_at[1], "task 2 started before task 1's results were stored"
    claimed_at = {t: at for at, call, t in source.calls if call == "claim"}
    assert executor.runs[1][0] <= claimed_at[2] < executor.runs[1][1], "task 2 was claimed while task 1 ran"
    assert claimed_at[3] < finished_at[1], "task 3 was not claimed while task 1's results were stored"


async def test_without_claim_ahead_a_task_is_claimed_only_after_the_previous_run(tmp_path):
    source = MemorySource([task(i, sleep_s=0.05) for i in range(1, 3)], tmp_path)
    executor = StandInExecutor()
    await make_worker(source, executor, claim_ahead=False).run(asyncio.Event(), burst=True)
    claimed_at = {t: at for at, call, t in source.calls if call == "claim"}
    assert claimed_at[2] >= executor.runs[1][1]


async def test_fully_sequential_results_are_stored_before_the_next_claim(tmp_path):
    source = MemorySource([task(i, sleep_s=0.05) for i in range(1, 4)], tmp_path, finish_s=0.1)
    await make_worker(source, claim_ahead=False, conclude_in_background=False).run(asyncio.Event(), burst=True)
    finished_at = {t: at for at, call, t in source.calls if call == "finished"}
    claimed_at = {t: at for at, call, t in source.calls if call == "claim"}
    assert set(finished_at) == {1, 2, 3}
    assert claimed_at[2] >= finished_at[1] and claimed_at[3] >= finished_at[2]


async def test_claims_made_while_a_task_runs_are_marked_ahead(tmp_path):
    source = MemorySource([task(i, sleep_s=0.05) for i in range(1, 3)], tmp_path)
    executor = StandInExecutor()
    await make_worker(source, executor).run(asyncio.Event(), burst=True)
    _, first_ahead = source.claims[0]
    assert not first_ahead
    second_at, second_ahead = source.claims[1]
    assert second_ahead and executor.runs[1][0] <= second_at < executor.runs[1][1]


async def test_a_claim_ahead_still_waiting_when_the_run_ends_becomes_an_ordinary_claim(tmp_path):
    source = MemorySource([task(1, sleep_s=0.2)], tmp_path, idle_wait_s=30.0)
    executor = StandInExecutor()
    stop = asyncio.Event()
    worker = make_worker(source, executor, claim_wait_s=30.0)
    running = asyncio.create_task(worker.run(stop))
    while len(source.claims) < 3 and not running.done():
        await asyncio.sleep(0.01)
    stop.set()
    assert await asyncio.wait_for(running, 10) == 1
    assert [ahead for _, ahead in source.claims[:3]] == [False, True, False]
    assert source.claims[2][0] >= executor.runs[1][1], "the ordinary claim came before the run ended"


async def test_a_run_longer_than_one_claim_wait_still_gets_its_task_ahead(tmp_path):
    source = MemorySource([task(1, sleep_s=0.6)], tmp_path, idle_wait_s=0.05)
    executor = StandInExecutor()
    stop = asyncio.Event()
    running = asyncio.create_task(make_worker(source, executor, claim_wait_s=0.05).run(stop))
    await asyncio.sleep(0.3)  # several claim waits into the run
    source.tasks.append(task(2, sleep_s=0.05))
    while 2 not in executor.runs and not running.done():
        await asyncio.sleep(0.01)
    stop.set()
    assert await asyncio.wait_for(running, 10) == 2
    claimed_at = {t: at for at, call, t in source.calls if call == "claim"}
    assert claimed_at[2] < executor.runs[1][1], "task 2 was not claimed ahead while task 1 ran"


async def test_claims_ask_only_for_allowed_flows(tmp_path):
    source = MemorySource([task(1, flow="f"), task(2, flow="g")], tmp_path, allowed=["g", "not-installed"])
    assert await make_worker(source).run(asyncio.Event(), burst=True) == 1
    assert set(source.outcomes) == {2}
    assert all(flows == ["g"] for flows in source.claimed_flows)


async def test_stop_releases_the_running_task_and_the_one_held_ahead(tmp_path):
    source = MemorySource([task(1, sleep_s=5.0), task(2, sleep_s=5.0)], tmp_path)
    stop = asyncio.Event()
    worker = make_worker(source)
    running = asyncio.create_task(worker.run(stop))
    while not (worker.current is not None and any(c == "prepare" and t == 2 for _, c, t in source.calls)):
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(running, timeout=3)
    assert source.outcomes == {1: ("released", None), 2: ("released", None)}


async def test_a_source_that_says_stop_ends_the_run_with_its_error(tmp_path):
    source = MemorySource([], tmp_path, claim_error=SourceStopped("credentials refused"))
    with pytest.raises(SourceStopped, match="credentials refused"):
        await asyncio.wait_for(make_worker(source).run(asyncio.Event()), timeout=3)


async def test_a_failing_claim_is_retried_without_ending_the_loop(tmp_path):
    source = MemorySource([], tmp_path, claim_error=ConnectionError("database away"))
    stop = asyncio.Event()
    running = asyncio.create_task(make_worker(source).run(stop))
    await asyncio.sleep(0.1)
    assert not running.done()
    source.claim_error = None
    source.tasks.append(task(1))
    while 1 not in source.outcomes:
        await asyncio.sleep(0.01)
    stop.set()
    assert await asyncio.wait_for(running, timeout=3) == 1


async def test_cancelling_run_itself_still_hands_back_every_held_task(tmp_path):
    source = MemorySource([task(1, sleep_s=5.0), task(2, sleep_s=5.0)], tmp_path)
    worker = make_worker(source)
    running = asyncio.create_task(worker.run(asyncio.Event()))
    while not (worker.current is not None and any(c == "prepare" and t == 2 for _, c, t in source.calls)):
        await asyncio.sleep(0.01)
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(running, timeout=3)
    assert source.outcomes == {1: ("released", None), 2: ("released", None)}
