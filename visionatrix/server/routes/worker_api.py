"""The worker protocol under ``/vapi/worker/`` (``docs/design/worker-protocol.md``, part 2): claim (a long-poll),
heartbeat, finish, fail, cancelled, release and the worker's own report; and the admin's
``PUT /vapi/workers/{worker_id}/allowed_flows``. The file transfers are in ``worker_files``.

A task's lease token travels in the body; a token that does not own the running task is a 409 ``lease_lost``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from aiohttp import web

from visionatrix.errors import LeaseLost, NotFound
from visionatrix.queue.events import Subscription
from visionatrix.queue.models import AHEAD_GRACE_S, ClaimedTask, FileRecord, TaskStatus, WorkerRecord, effective_flows
from visionatrix.queue.prompts import PromptTasks, is_node_set
from visionatrix.server import jsonio, parsing, request_models, views, worker_models, worker_request
from visionatrix.server.claim_ledger import ClaimLedger, Key
from visionatrix.server.errors import BadRequest
from visionatrix.server.services import SERVICES
from visionatrix.storage.files import TaskStorage
from visionatrix.storage.info import file_info

log = logging.getLogger(__name__)

CLAIMS_CLOSING = web.AppKey("worker_claims_closing", asyncio.Event)
"""Set when the application shuts down: every waiting claim answers ``{"task": null}`` at once."""
WORKER_NODE_TYPES = web.AppKey("worker_node_types", dict[str, frozenset[str]])
"""The node types each worker last reported: it takes the ComfyUI prompts made of them."""
CLAIMS = web.AppKey("worker_claims", ClaimLedger)
"""Claims by ``claim_id``: a retried claim gets the task of its lost reply; a withdrawn one releases it."""
WAKE_EVENTS = frozenset({"task_queued", "task_restarted"})
"""Events after which a task may be claimable."""


def _reply(body: object, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=jsonio.dumps)


def _client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


# -- claim -------------------------------------------------------------------------------------------------------


async def claim(request: web.Request) -> web.Response:
    """Claim the next task of the worker's effective flows, waiting up to ``wait_s`` for one to be queued.

    The subscription to the task events is taken before the first attempt, so a task queued between an attempt and
    the wait still wakes the claim. A claim made ``ahead`` (the worker is busy) pauses ``AHEAD_GRACE_S`` after a
    wake-up, so an idle worker woken by the same task claims it first. A ``claim_id`` seen before answers what
    that claim got (its reply was lost) or, withdrawn, no task.
    """
    services = request.app[SERVICES]
    body = await request_models.read(request, worker_models.ClaimRequest)
    key: Key | None = None
    if body.claim_id is not None:
        key = (body.worker_id, body.claim_id)
        earlier = request.app[CLAIMS].open(key)
        if earlier.withdrawn or earlier.reply is not None:
            return _reply({"task": earlier.reply})
    named = effective_flows(body.installed_flows, await services.queue.allowed_flows(body.worker_id))
    node_types = request.app[WORKER_NODE_TYPES].get(body.worker_id)
    prompts = services.prompts
    assert prompts is not None
    closing = request.app[CLAIMS_CLOSING]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + body.wait_s
    async with services.events.subscribe() as subscription:
        while not _client_gone(request) and not request.app[CLAIMS].withdrawn(key):
            flows = list(named)  # and the prompts it can run, read again each time: a new kind may have woken it
            if node_types is not None:
                flows += await prompts.runnable_flows(node_types)
            task = await services.queue.claim_next(body.worker_id, flows, last_flow=body.last_flow)
            if task is not None:
                return await _hand_over(request, task, key)
            remaining = deadline - loop.time()
            if remaining <= 0 or closing.is_set() or subscription.closed:
                break
            if await _wait_for_work(subscription, _Wanted(frozenset(flows), node_types, prompts), closing,
                                    remaining) and body.ahead:
                await _pause(closing, min(AHEAD_GRACE_S, deadline - loop.time()))
    return _reply({"task": None})


async def _hand_over(request: web.Request, task: ClaimedTask, key: Key | None) -> web.Response:
    """The claimed task's reply; or, when the worker stopped waiting (it left, or withdrew the claim), the task
    goes back at once rather than at its lease's end. Checked again after the last ``await``: a withdrawal handled
    while the task's files were read would otherwise find nothing to release."""
    queue = request.app[SERVICES].queue
    claims = request.app[CLAIMS]
    view = None
    if not (_client_gone(request) or claims.withdrawn(key)):
        view = views.claimed_task_view(task, (await queue.get(task.id)).files)
    if view is None or _client_gone(request) or claims.withdrawn(key):
        log.info("task %s: claimed for a worker that left; released", task.id)
        with contextlib.suppress(LeaseLost):
            await queue.release(task.id, task.lease_token)
        return _reply({"task": None})
    if key is not None:
        claims.handed(key, task, view)  # no await since the check: a withdrawal from now on finds the task
    return _reply({"task": view})


async def withdraw_claim(request: web.Request) -> web.Response:
    """The worker gave up on a claim (it cancelled the request): the task that claim got, if any, is released."""
    body = await request_models.read(request, worker_models.WithdrawRequest)
    task = request.app[CLAIMS].withdraw((body.worker_id, body.claim_id))
    released = None
    if task is not None:
        with contextlib.suppress(LeaseLost):
            await request.app[SERVICES].queue.release(task.id, task.lease_token)
            released = task.id
            log.info("task %s: its claim was withdrawn by worker %s; released", task.id, body.worker_id)
    return _reply({"released_task_id": released})


@dataclass
class _Wanted:
    """What a waiting claim wakes for: a task of one of ``flows``, or a prompt made of ``node_types``."""

    flows: frozenset[str]
    node_types: frozenset[str] | None
    prompts: PromptTasks

    def __contains__(self, flow: object) -> bool:
        if flow in self.flows:
            return True
        if self.node_types is None or not isinstance(flow, str) or not is_node_set(flow):
            return False
        needs = self.prompts.known_node_types(flow)
        return needs is not None and needs <= self.node_types


async def _wait_for_work(subscription: Subscription, flows: _Wanted, closing: asyncio.Event,
                         timeout_s: float) -> bool:
    """Return when a task of one of ``flows`` may have become claimable (True), the server is closing, the
    subscription ended, or ``timeout_s`` passed (False)."""
    woken = asyncio.ensure_future(_claimable(subscription, flows))
    closed = asyncio.ensure_future(closing.wait())
    try:
        await asyncio.wait((woken, closed), timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        return woken.done() and not woken.cancelled() and woken.exception() is None
    finally:
        for waiter in (woken, closed):
            waiter.cancel()
        await asyncio.gather(woken, closed, return_exceptions=True)


async def _pause(closing: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, cut short when the server closes."""
    closed = asyncio.ensure_future(closing.wait())
    try:
        await asyncio.wait((closed,), timeout=max(0.0, seconds))
    finally:
        closed.cancel()
        await asyncio.gather(closed, return_exceptions=True)


async def _claimable(subscription: Subscription, flows: _Wanted) -> None:
    async for event in subscription:
        if event.get("type") in WAKE_EVENTS and event.get("flow") in flows:
            return


async def stop_claims(app: web.Application) -> None:
    """``on_shutdown``: waiting claims answer now, so a server stop is not held up by long-polls."""
    app[CLAIMS_CLOSING].set()


# -- the lease: heartbeat and outcome ----------------------------------------------------------------------------


async def start(request: web.Request) -> web.Response:
    """The worker starts executing the task it claimed: ``claimed`` until now, ``running`` from now."""
    task_id = parsing.task_id(request)
    body = await request_models.read(request, worker_models.LeaseRequest)
    state = await request.app[SERVICES].queue.mark_started(task_id, body.lease_token)
    return _reply({"cancel_requested": state.cancel_requested})


async def heartbeat(request: web.Request) -> web.Response:
    """Extend the lease; with ``progress``, also store the progress and the running node."""
    queue = request.app[SERVICES].queue
    task_id = parsing.task_id(request)
    body = await request_models.read(request, worker_models.Heartbeat)
    if body.progress is None:
        state = await queue.extend_lease(task_id, body.lease_token)
    else:
        state = await queue.report_progress(task_id, body.lease_token, progress=body.progress,
                                            current_node=body.current_node)
    return _reply({"cancel_requested": state.cancel_requested})


async def finish(request: web.Request) -> web.Response:
    """The run succeeded; the named outputs must already be in ``output/<id>/`` (the server measures them)."""
    services = request.app[SERVICES]
    task_id = parsing.task_id(request)
    body = await request_models.read(request, worker_models.FinishRequest)
    outputs, missing = await asyncio.to_thread(_describe_outputs, services.storage, task_id, body.outputs)
    temps, missing_temps = await asyncio.to_thread(_describe_outputs, services.storage, task_id, body.temps, "temp")
    outputs, missing = outputs + temps, missing + [f"temp {name}" for name in missing_temps]
    if missing:
        await services.queue.extend_lease(task_id, body.lease_token)  # a lost lease is the answer that matters
        raise BadRequest("missing_outputs", f"not in the task's output folder (upload them first): "
                         f"{', '.join(missing)}", {"missing": missing})
    await services.queue.mark_finished(task_id, body.lease_token, timings=body.timings, outputs=outputs,
                                       peak_vram_bytes=body.peak_vram_bytes)
    return _reply({"status": TaskStatus.FINISHED.value})


def _describe_outputs(storage: TaskStorage, task_id: int, outputs: list[worker_models.OutputRef],
                      kind: str = "output") -> tuple[list[FileRecord], list[str]]:
    """The ``kind`` rows of the named files (outputs or temps), measured on disk; or the names that are not there."""
    found, missing = [], []
    for output in outputs:
        try:
            found.append((output, storage.resolve(task_id, kind, output.name)))
        except NotFound:
            missing.append(output.name)
    if missing:
        return [], missing
    records = []
    for output, path in found:
        info = file_info(path)
        records.append(FileRecord(kind=kind, name=output.name, node_id=output.node_id,
                                  size_bytes=info.size_bytes, sha256=info.sha256, param=None))
    return records, []


async def fail(request: web.Request) -> web.Response:
    task_id = parsing.task_id(request)
    body = await request_models.read(request, worker_models.FailRequest)
    await request.app[SERVICES].queue.mark_failed(task_id, body.lease_token, node_id=body.node_id,
                                                  class_type=body.class_type, message=body.message,
                                                  traceback=body.traceback, peak_vram_bytes=body.peak_vram_bytes)
    return _reply({"status": TaskStatus.FAILED.value})


async def cancelled(request: web.Request) -> web.Response:
    """The worker stopped the run of a task whose cancel was requested."""
    task_id = parsing.task_id(request)
    body = await request_models.read(request, worker_models.LeaseRequest)
    await request.app[SERVICES].queue.mark_cancelled(task_id, body.lease_token)
    return _reply({"status": TaskStatus.CANCELLED.value})


async def release(request: web.Request) -> web.Response:
    """Give the task back: ``pending`` again, or ``cancelled`` when its cancel was requested."""
    queue = request.app[SERVICES].queue
    task_id = parsing.task_id(request)
    body = await request_models.read(request, worker_models.LeaseRequest)
    await queue.release(task_id, body.lease_token)
    try:  # a released task is pending unless its cancel was requested (cancelled is where it then stays)
        cancelled_now = (await queue.get(task_id)).status == TaskStatus.CANCELLED
    except NotFound:  # deleted in the meantime
        cancelled_now = False
    return _reply({"status": (TaskStatus.CANCELLED if cancelled_now else TaskStatus.PENDING).value})


# -- workers -----------------------------------------------------------------------------------------------------


def worker_id_of(request: web.Request) -> str:
    worker_id = request.match_info["worker_id"]
    if len(worker_id) > worker_request.MAX_ID_CHARS:
        problem = f"longer than {worker_request.MAX_ID_CHARS} characters"
        raise BadRequest("invalid_request", f"the worker id is {problem}", {"worker_id": problem})
    return worker_id


async def report_worker(request: web.Request) -> web.Response:
    """A worker's liveness report; the answer is the flows an admin lets it take (null: every one it has) and the
    commands an admin queued for it (each handed out once)."""
    queue = request.app[SERVICES].queue
    worker_id = worker_id_of(request)
    body = await request_models.read(request, worker_models.WorkerReport)
    if body.node_types is not None:
        request.app[WORKER_NODE_TYPES][worker_id] = frozenset(body.node_types)
    now = datetime.now(UTC)
    allowed = await queue.upsert_worker(WorkerRecord(
        worker_id=worker_id, mode=body.mode, device=body.device, installed_flows=body.installed_flows,
        current_task_id=body.current_task_id, last_seen_at=now, resources=body.resources_dict(),
        stopped_at=now if body.stopping else None, models=body.models))
    commands = [] if body.stopping else await queue.take_commands(worker_id)
    return _reply({"allowed_flows": allowed, "commands": commands})


async def set_allowed_flows(request: web.Request) -> web.Response:
    """Admin: restrict a worker to some flows (``null`` lifts the restriction); 404 for a worker never seen."""
    queue = request.app[SERVICES].queue
    worker_id = worker_id_of(request)
    body = await request_models.read(request, request_models.AllowedFlowsRequest)
    return _reply(views.worker_view(await queue.set_allowed_flows(worker_id, body.flows)))
