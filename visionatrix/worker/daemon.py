"""The worker loop: claim a task, run its graph, keep the lease alive, report throttled progress, store results —
pipelined, so the executor does not wait for the network.

While the executor runs task N the loop holds at most one claim ahead (N+1): it claims it, prepares its inputs
(downloads them, for the HTTP source) and keeps its lease alive until N+1 starts. Task N-1's outcome (uploads and
``finish``) is stored in the background at the same time, with at most one such conclusion in flight: a worker
holds at most three tasks (N-1 concluding, N running, N+1 ahead). ``docs/worker.md`` has the timeline.

Two catch-all boundaries only (STYLE.md): per node, inside the executor (a node's exception becomes the task's error
with node id and class), and per loop iteration here (logged; the daemon never dies on one bad task). Cancellation
is not an error. On shutdown the running task is interrupted and released back to ``pending`` (finished, when it
already ended), the task held ahead is released, pending conclusions complete — never is a task left ``running``.
``SourceStopped`` (the server refused the worker's credentials) ends ``run`` with that error.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from visionatrix.errors import Interrupted, InvalidGraph, LeaseLost, NodeFailed
from visionatrix.executor import devices
from visionatrix.executor.run import Executor
from visionatrix.queue.models import effective_flows
from visionatrix.queue.prompts import is_node_set
from visionatrix.worker.held import HeldTask, LeaseKeeper
from visionatrix.worker.outcomes import Outcome, WorkerOutcomes
from visionatrix.worker.outputs import run_temp_dir
from visionatrix.worker.reports import WorkerReports
from visionatrix.worker.source import SourceStopped, TaskSource
from visionatrix.worker.waiting import cancel_and_wait

if TYPE_CHECKING:
    from visionatrix.worker.models import WorkerModels

log = logging.getLogger(__name__)


@dataclass
class WorkerOptions:
    """Every knob of the loop, with units in the names."""

    worker_id: str
    installed_flows: Sequence[str] | Callable[[], Sequence[str]]
    """The flows this worker may take, or a callable asked before each claim (flows installed while running)."""
    lease_s: float = 60.0
    """The queue's lease length; heartbeats come every third of it (or of a shorter lease a claim reports)."""
    progress_interval_s: float = 0.5
    """At most one progress write per this many seconds."""
    claim_wait_s: float = 20.0
    """How long one claim waits for a task (the HTTP long poll, the database source's wake-up wait)."""
    seen_interval_s: float = 10.0
    """How often the worker reports itself (``GET /vapi/workers``) and learns the flows it is allowed."""
    claim_ahead: bool = True
    """Hold one claim ahead while a task runs (pipelining); off, a task is claimed only when the executor is free."""
    conclude_in_background: bool = True
    """Store a task's results while the next one runs; off, the loop waits for them before it claims again (with
    ``claim_ahead`` off too: download, run, upload one after another)."""
    retry_s: float = 1.0
    """Pause after a claim or the first report failed, before trying again."""
    final_report_timeout_s: float = 5.0
    """How long the report on the way out may take (a server that is down must not hold up the shutdown)."""
    models: WorkerModels | None = None
    """The worker's model store and downloads: reported, and used for the admin's install commands."""


class Worker(WorkerOutcomes, WorkerReports):
    """Runs tasks from ``source`` with ``executor``."""

    def __init__(self, source: TaskSource, executor: Executor, options: WorkerOptions) -> None:
        self.source = source
        self.executor = executor
        self.options = options
        self.last_flow: str | None = None
        self.allowed_flows: list[str] | None = None
        """The flows an admin lets this worker take, from its last report (None: unrestricted)."""
        self.current: HeldTask | None = None
        """The task the executor is running now."""
        self._stopping = asyncio.Event()
        self._report_due = asyncio.Event()
        self._fatal: SourceStopped | None = None
        self._keeper = self._lease_keeper()
        self._claiming: asyncio.Task[HeldTask | None] | None = None
        """The claim in flight, or the task held ahead once it is done."""
        self._won: dict[asyncio.Task[HeldTask | None], HeldTask] = {}
        """What a claim returns, noted just before it returns: a claim cancelled at that very moment ends
        ``cancelled`` and its result would otherwise be lost (with the task leased to this worker)."""
        self._concluding: asyncio.Task[None] | None = None
        """The previous task's outcome being stored."""
        self._running: tuple[HeldTask, asyncio.Task[Outcome]] | None = None
        """The task the executor runs, and that run."""

    def _lease_keeper(self) -> LeaseKeeper:
        return LeaseKeeper(self.source, progress_interval_s=self.options.progress_interval_s,
                           interrupt=self.executor.interrupt, stopping=self._stopping, on_stopped=self._halt)

    # -- the loop ----------------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, burst: bool = False) -> int:
        """Take and run tasks until ``stop`` is set (or, in ``burst`` mode, until no task is left to claim).

        Returns how many tasks this call ran; raises ``SourceStopped`` when the source refused to go on.
        """
        self._stopping = asyncio.Event()
        self._fatal = None
        self._keeper = self._lease_keeper()
        self._claiming = self._concluding = self._running = None
        mirror = asyncio.create_task(self._mirror(stop))
        reporter: asyncio.Task[None] | None = None
        ran = 0
        try:
            if await self._first_report(burst):
                reporter = asyncio.create_task(self._report_periodically())
                ran = await self._loop(burst)
        finally:
            self._stopping.set()
            await self._let_go(self._claiming)
            if self._running is not None:  # ``run`` itself was cancelled mid-run: the run is interrupted too
                held, running = self._running
                await asyncio.wait([running])
                outcome = Outcome("interrupted") if running.cancelled() else running.result()
                await self._conclude(held, outcome)
            if self._concluding is not None:
                await self._concluding
            await cancel_and_wait(reporter)
            await self._final_report()
            await cancel_and_wait(mirror)
        if self._fatal is not None:
            raise self._fatal
        return ran

    async def _loop(self, burst: bool) -> int:
        """Claim (one ahead), run, conclude in the background; how many tasks ran."""
        ran = 0
        ahead = False
        wait_s = 0.0 if burst else self.options.claim_wait_s
        while not self._stopping.is_set():
            try:
                if ahead and self._claiming is not None:
                    await self._claim_now()
                if self._claiming is None:
                    self._claiming, ahead = asyncio.create_task(self._acquire(wait_s)), False
                if not await self._until_stopping(self._claiming):
                    break
                claimed, self._claiming = self._claiming, None
                self._won.pop(claimed, None)
                held = claimed.result()
                if held is None:
                    if burst and not ahead:
                        break
                    continue
                ran += 1
                running = asyncio.create_task(self._execute(held))
                self._running = held, running
                if self.options.claim_ahead and not self._stopping.is_set():
                    self._claiming, ahead = asyncio.create_task(self._acquire(wait_s, ahead=True)), True
                if self._concluding is not None:  # at most one conclusion in flight
                    await self._concluding
                    self._concluding = None
                outcome = await running
                self._running = None
                self._concluding = asyncio.create_task(self._conclude(held, outcome))
                if not self.options.conclude_in_background:
                    await self._concluding
                    self._concluding = None
            except Exception:
                log.exception("worker %s: loop iteration failed; going on", self.options.worker_id)
                await asyncio.sleep(self.options.retry_s)
        return ran

    async def _claim_now(self) -> None:
        """The executor is free and the claim made ahead still waits (yielding new tasks to idle workers): replace it
        with an ordinary claim. A task it got meanwhile is kept."""
        claiming = self._claiming
        assert claiming is not None
        if claiming.done():
            return
        claiming.cancel()
        await asyncio.wait([claiming])
        held = self._cancelled_claim(claiming)
        if held is None:
            self._claiming = None
        elif claiming.cancelled():  # it got a task just as it was cancelled: keep that task
            self._claiming = asyncio.create_task(self._held(held))

    @staticmethod
    async def _held(held: HeldTask) -> HeldTask | None:
        return held

    def _cancelled_claim(self, claiming: asyncio.Task[HeldTask | None]) -> HeldTask | None:
        """The task a claim that was cancelled got anyway (None: it got none, or gave it back)."""
        won = self._won.pop(claiming, None)
        if claiming.cancelled():
            return won
        if claiming.exception() is not None:
            return None
        return claiming.result()

    async def _mirror(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._stopping.set()

    def _halt(self, exc: SourceStopped) -> None:
        """The source says the worker must stop."""
        if self._fatal is None:
            log.error("worker %s: stopping: %s", self.options.worker_id, exc)
            self._fatal = exc
        self._stopping.set()

    async def _until_stopping(self, pending: Awaitable[Any]) -> bool:
        """Wait for ``pending`` or the shutdown, whichever comes first; True when ``pending`` is done."""
        future = asyncio.ensure_future(pending)
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([future, stopping], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        return future.done()

    async def _let_go(self, claiming: asyncio.Task[HeldTask | None] | None) -> None:
        """Shutdown: a claim in flight is cancelled (the source gives back what it got); a task held ahead is
        released."""
        if claiming is None:
            return
        while not claiming.done():  # a claim that ignored one cancellation is cancelled again
            claiming.cancel()
            await asyncio.wait([claiming], timeout=1.0)
        held = self._cancelled_claim(claiming)
        if held is not None:
            await self._drop(held, release=True)

    # -- flows and claims --------------------------------------------------------------------------------------

    def _installed(self) -> list[str]:
        flows = self.options.installed_flows
        return list(flows() if callable(flows) else flows)

    def _flows(self) -> list[str]:
        """The flows to ask for: installed here and allowed by the admin."""
        return effective_flows(self._installed(), self.allowed_flows)

    async def _acquire(self, wait_s: float, *, ahead: bool = False) -> HeldTask | None:
        """Claim a task and prepare its inputs, keeping its lease from the moment it is claimed. None when no task
        came within ``wait_s`` (or the claim failed; it is logged). A task whose preparation failed is failed with
        the reason, and the next one is claimed. ``ahead``: claimed while the executor is busy."""
        while True:
            try:
                task = await self.source.claim(self.options.worker_id, self._flows(), self.last_flow, wait_s,
                                               ahead=ahead)
            except SourceStopped as exc:
                self._halt(exc)
                return None
            except Exception:
                log.exception("worker %s: claiming failed; retrying", self.options.worker_id)
                await asyncio.sleep(self.options.retry_s)
                return None
            if task is None:
                if ahead and wait_s > 0 and self._running is not None and not self._stopping.is_set():
                    continue  # the run goes on: a claim ahead keeps waiting (a long run outlasts one long poll)
                return None
            held = HeldTask.of(task, self.options.lease_s)
            self._keeper.start(held)
            try:
                held.input_dir, held.output_dir = await self.source.prepare(task)
                claiming = asyncio.current_task()
                if claiming is not None:  # noted before returning: see ``_won``
                    self._won[claiming] = held
                return held
            except asyncio.CancelledError:
                await self._drop(held, release=True)
                raise
            except LeaseLost:
                log.warning("task %s: lease lost while its inputs were prepared", task.id)
                await self._drop(held, release=False)
            except SourceStopped as exc:
                self._halt(exc)
                await self._drop(held, release=False)
                return None
            except Exception as exc:
                log.exception("task %s: preparing its inputs failed", task.id)
                await self._settle(held, self.source.fail(
                    task, node_id=None, class_type=None, message=f"preparing the inputs failed: {exc}",
                    traceback=traceback.format_exc()))

    # -- running (concluding: outcomes.WorkerOutcomes) ---------------------------------------------------------

    async def _execute(self, held: HeldTask) -> Outcome:
        """Run the task on the executor (unless it was cancelled, lost or refused while it waited)."""
        task = held.task
        if held.lease_lost:
            return Outcome("dropped")
        if held.cancel_requested or self._stopping.is_set():
            return Outcome("interrupted")
        if not is_node_set(task.flow) and task.flow not in self._flows():  # a prompt is any capable worker's
            log.warning("task %s: flow %s is no longer allowed here; giving it back", task.id, task.flow)
            return Outcome("interrupted")
        assert held.input_dir is not None and held.output_dir is not None
        if not await self._keeper.begin(held):  # claimed until now: the task shows running, and is timed, from here
            return Outcome("dropped" if held.lease_lost else "interrupted")
        self.current, self.last_flow, held.running = held, task.flow, True
        self._report_due.set()
        try:
            models = self.options.models
            graph = models.graph_for_run(task.graph) if models is not None else task.graph
            result = await self.executor.execute(
                graph, prompt_id=str(task.id), on_event=held.tracker, input_dir=held.input_dir,
                output_dir=held.output_dir, temp_dir=run_temp_dir(held.output_dir),
                extra_data={"extra_pnginfo": {"visionatrix_task": {"id": task.id, "flow": task.flow}}})
        except Interrupted:
            return Outcome("interrupted")
        except NodeFailed as exc:
            # The run's GPU memory peak: the executor measures it anew only when its next run starts, and nothing
            # was awaited since this one let go of it (None on a CPU device).
            peak = devices.peak_vram_bytes(self.executor.device)
            return Outcome("failed", error={"node_id": exc.node_id, "class_type": exc.class_type,
                                             "message": str(exc), "traceback": getattr(exc, "traceback", ""),
                                             "peak_vram_bytes": peak})
        except InvalidGraph as exc:
            return Outcome("failed", error={"node_id": None, "class_type": None,
                                             "message": "; ".join(exc.issue_lines()), "traceback": ""})
        except Exception as exc:
            log.exception("task %s: the executor failed", task.id)
            return Outcome("failed", error={"node_id": None, "class_type": None,
                                             "message": f"{type(exc).__name__}: {exc}",
                                             "traceback": traceback.format_exc()})
        finally:
            held.running = False
            self.current = None
            self._report_due.set()
        return Outcome("finished", result=result)
