"""ComfyUI's WebSocket (``/ws?clientId=``): a prompt's progress, pushed to the client that queued it
(``comfyui_api.md`` §2).

Our tasks' events are translated: a prompt task that starts is ``execution_start`` and ``execution_cached``; a new
running node is ``executing`` (the task's ``current_node``: the submitted graph's node, also for the nodes its
expansion made, which run for it); progress is ``progress`` (percent of the whole prompt, ``max`` 100); the end is
``executed`` for each output node with its files (``node``: the id it ran under, ``"<node>.<...>"`` for one made by
expansion; ``display_node``: the graph's node it shows as, as ComfyUI sends them), then ``execution_success`` (or
``execution_error`` / ``execution_interrupted``), ``status`` and ``executing`` with ``node: null`` — after the
task's row is final, so ``/history/{prompt_id}`` is complete by then. ``status`` (``queue_remaining``) goes to
every socket when a prompt is queued or ends.

The translation reads the task's row and sends only what changed since it last looked, from two sides: the
server's own task events (HTTP workers, the in-process worker: at once) and a look at every unfinished prompt task
each ``POLL_S`` (Database-FS workers write the database directly; the server sees no event of theirs). Events of a
client that is not connected are dropped, as ComfyUI drops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from visionatrix.queue.events import Subscription
from visionatrix.queue.models import TaskStatus
from visionatrix.queue.prompts import PromptRecord, PromptTasks, is_node_set
from visionatrix.server import jsonio
from visionatrix.server.comfy import records
from visionatrix.server.comfy.internal import LOGS, TERMINAL, RecentLogs
from visionatrix.server.comfy.shell import feature_flags
from visionatrix.server.identity import Identity, identity
from visionatrix.server.services import SERVICES, Services

log = logging.getLogger(__name__)

POLL_S = 0.5
STOP_WAIT_S = 5.0
DONE = (TaskStatus.FINISHED, TaskStatus.FAILED, TaskStatus.CANCELLED)
WAITING = (TaskStatus.PENDING, TaskStatus.CLAIMED, TaskStatus.RUNNING)
"""The prompts that count in ``queue_remaining``."""


@dataclass
class _Seen:
    """What a prompt's client has been told."""

    started: bool = False
    node: str | None = None
    progress: float = -1.0
    finished_nodes: list[str] = field(default_factory=list)
    """Nodes that ran before the current one (``progress_state`` shows them ``finished``)."""


class PromptSockets:
    """The connected ComfyUI clients, and the translation of prompt tasks' progress into their messages."""

    def __init__(self, services: Services) -> None:
        self.services = services
        prompts = services.prompts
        assert prompts is not None
        self.prompts: PromptTasks = prompts
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self.viewers: dict[str, Identity] = {}
        """Who opened each socket: a prompt's messages go to its client only when that caller may see the prompt."""
        self.client_flags: dict[str, dict[str, Any]] = {}
        """Each socket's feature flags (its first message): ``supports_preview_metadata`` picks the preview frame."""
        self.seen: dict[int, _Seen] = {}
        self._jobs: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._subscription: Subscription | None = None
        self._log_sends: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def start(self, logs: RecentLogs | None = None) -> None:
        self._jobs = [asyncio.create_task(self._follow_events()), asyncio.create_task(self._poll())]
        if logs is not None:  # the terminal panel's subscribers get the new log lines
            loop = asyncio.get_running_loop()
            logs.forward = lambda sids, entries: loop.call_soon_threadsafe(self._send_logs, sids, entries)
        for waiting in await self.prompts.list(WAITING):
            self.seen.setdefault(waiting.task.id, _Seen(started=waiting.task.status is TaskStatus.RUNNING))

    async def stop(self) -> None:
        """Let the translation finish what it is doing (no query cut in half), then close the sockets."""
        self._stopping.set()
        if self._subscription is not None:
            await self._subscription.aclose()
        if self._jobs:
            _, late = await asyncio.wait(self._jobs, timeout=STOP_WAIT_S)
            for job in late:
                job.cancel()
            await asyncio.gather(*self._jobs, return_exceptions=True)
        for ws in list(self.sockets.values()):
            with contextlib.suppress(Exception):
                await ws.close()

    # -- the socket --------------------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30, max_msg_size=1024 * 1024)
        await ws.prepare(request)
        caller = identity(request)
        sid = request.query.get("clientId") or uuid.uuid4().hex
        if sid in self.viewers and self.viewers[sid].person != caller.person:
            sid = uuid.uuid4().hex  # another caller's client id: never take over their socket
        self.viewers[sid] = caller  # claimed before any await, so a second caller cannot slip in
        try:
            # the greeting (with the sid) first: broadcasts reach the socket only once it is registered below
            remaining = await self.prompts.count(WAITING, owner_id=caller.owner_filter)
            await ws.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": remaining}},
                                                           "sid": sid}})
            previous = self.sockets.get(sid)
            self.sockets[sid] = ws
            if previous is not None and previous is not ws:
                with contextlib.suppress(Exception):
                    await previous.close()
            answered = False
            async for message in ws:
                if message.type is WSMsgType.TEXT and not answered:
                    answered = True  # only the first text message counts (the client's feature flags)
                    self.client_flags[sid] = _flags_of(message.data)
                    await ws.send_json({"type": "feature_flags", "data": feature_flags(self.services)})
                elif message.type is WSMsgType.ERROR:
                    break
        finally:
            if self.sockets.get(sid) is ws:
                del self.sockets[sid]
                self.client_flags.pop(sid, None)
                self.viewers.pop(sid, None)
            elif sid not in self.sockets:
                self.viewers.pop(sid, None)
        return ws

    async def send(self, sid: str | None, kind: str, data: dict[str, Any]) -> None:
        ws = self.sockets.get(sid) if sid is not None else None
        if ws is None or ws.closed:
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_json({"type": kind, "data": data})

    def _send_logs(self, sids: set[str], entries: list[dict[str, str]]) -> None:
        for sid in sids:
            if sid in self.sockets:
                job = asyncio.create_task(self.send(sid, "logs", {"entries": entries, "size": TERMINAL}))
                self._log_sends.add(job)
                job.add_done_callback(self._log_sends.discard)

    async def broadcast_status(self) -> None:
        """Each socket's ``queue_remaining``: of every prompt for an admin, of the caller's own for a user."""
        counts: dict[int | None, int] = {}
        for sid in list(self.sockets):
            viewer = self.viewers.get(sid)
            owner = viewer.owner_filter if viewer is not None else None
            if owner not in counts:
                counts[owner] = await self.prompts.count(WAITING, owner_id=owner)
            await self.send(sid, "status", {"status": {"exec_info": {"queue_remaining": counts[owner]}}})

    def _recipient(self, prompt: PromptRecord) -> str | None:
        """The prompt's client socket, when whoever opened it may see the prompt; None otherwise."""
        sid = prompt.client_id
        viewer = self.viewers.get(sid) if sid is not None else None
        return sid if viewer is not None and viewer.may_see(prompt.task.owner_id) else None

    # -- translation -------------------------------------------------------------------------------------------

    async def _follow_events(self) -> None:
        async with self.services.events.subscribe() as subscription:
            self._subscription = subscription
            async for event in subscription:
                task_id = event.get("task_id")
                # A prompt's task runs a node set: every other task (a flow's) is none of this socket's business,
                # and needs no look at the database.
                if not isinstance(task_id, int) or not is_node_set(str(event.get("flow", ""))):
                    continue
                try:
                    if event.get("type") == "task_preview":
                        await self._preview(task_id, event)
                        continue
                    if event.get("type") == "task_deleted":
                        self.seen.pop(task_id, None)
                        await self.broadcast_status()
                        continue
                    prompt = await self.prompts.by_task(task_id)
                    if prompt is None:  # deleted meanwhile
                        continue
                    await self.observe(prompt, queued=event.get("type") in ("task_queued", "task_restarted"))
                except Exception:
                    log.exception("comfy socket: translating %s of task %s failed", event.get("type"), task_id)

    async def _preview(self, task_id: int, event: dict[str, Any]) -> None:
        """A running node's preview image to the prompt's client, as a binary frame: type 4 with its metadata for a
        client that said ``supports_preview_metadata``, else type 1 (``[1][format 1=JPEG, 2=PNG][bytes]``)."""
        image = event.get("image")
        if not isinstance(image, bytes):
            return
        prompt = await self.prompts.by_task(task_id)
        if prompt is None:
            return
        sid = self._recipient(prompt)
        ws = self.sockets.get(sid) if sid is not None else None
        if ws is None or ws.closed:
            return
        png = image.startswith(b"\x89PNG")
        if self.client_flags.get(sid or "", {}).get("supports_preview_metadata"):
            ids = records.node_meta(prompt.task, str(event.get("node_id")))
            meta = json.dumps({"node_id": ids["node_id"], "prompt_id": prompt.prompt_id,
                               "display_node_id": ids["display_node"], "parent_node_id": ids["parent_node"],
                               "real_node_id": ids["real_node_id"],
                               "image_type": "image/png" if png else "image/jpeg"}).encode()
            frame = struct.pack(">II", 4, len(meta)) + meta + image
        else:
            frame = struct.pack(">II", 1, 2 if png else 1) + image
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_bytes(frame)

    async def _poll(self) -> None:
        while not await _stopped_within(self._stopping, POLL_S):
            try:
                for prompt in await self.prompts.by_tasks(list(self.seen)):
                    await self.observe(prompt)
            except Exception:
                log.exception("comfy socket: looking at the running prompts failed")

    async def observe(self, prompt: PromptRecord, *, queued: bool = False) -> None:
        """Tell the prompt's client what changed since it was last told."""
        async with self._lock:
            await self._observe(prompt, queued)

    async def _observe(self, prompt: PromptRecord, queued: bool) -> None:
        task, sid, pid = prompt.task, self._recipient(prompt), prompt.prompt_id
        if queued or task.id not in self.seen:
            self.seen[task.id] = _Seen()
            await self.broadcast_status()
        seen = self.seen[task.id]
        if task.status in (TaskStatus.PENDING, TaskStatus.CLAIMED):  # claimed: not executing yet
            return
        if not seen.started:
            seen.started = True
            stamp = records.ms(task.started_at) or _now_ms()
            await self.send(sid, "execution_start", {"prompt_id": pid, "timestamp": stamp})
            await self.send(sid, "execution_cached", {"nodes": [], "prompt_id": pid, "timestamp": stamp})
        if task.status is TaskStatus.RUNNING:
            moved = bool(task.current_node) and task.current_node != seen.node
            if moved:
                if seen.node is not None and seen.node not in seen.finished_nodes:
                    seen.finished_nodes.append(seen.node)
                seen.node = task.current_node
                await self.send(sid, "executing", {"node": seen.node, "display_node": seen.node, "prompt_id": pid})
            if seen.node is not None and (moved or task.progress != seen.progress):
                seen.progress = task.progress
                await self.send(sid, "progress_state", _progress_state(pid, seen, running=True))
                await self.send(sid, "progress", {"value": round(task.progress), "max": 100, "prompt_id": pid,
                                                  "node": seen.node})
            return
        await self._conclude(prompt)

    async def _conclude(self, prompt: PromptRecord) -> None:
        task, sid, pid = prompt.task, self._recipient(prompt), prompt.prompt_id
        seen = self.seen.pop(task.id, None) or _Seen()
        if seen.node is not None:
            await self.send(sid, "progress_state", _progress_state(pid, seen, running=False,
                                                                   failed=task.status is not TaskStatus.FINISHED))
        end = records.ms(task.finished_at) or _now_ms()
        if task.status is TaskStatus.FINISHED:
            for node, output in records.node_outputs(task).items():
                shown = records.node_meta(task, node)["display_node"]  # a node made by expansion: its graph node
                await self.send(sid, "executing", {"node": node, "display_node": shown, "prompt_id": pid})
                await self.send(sid, "executed", {"node": node, "display_node": shown, "output": output,
                                                  "prompt_id": pid})
            await self.send(sid, "execution_success", {"prompt_id": pid, "timestamp": end})
        elif task.status is TaskStatus.FAILED:
            await self.send(sid, "execution_error", records.error_payload(task, pid))
        else:
            stopped_at = task.current_node
            await self.send(sid, "execution_interrupted", {"prompt_id": pid, "node_id": stopped_at,
                                                           "node_type": _class_of(task.graph, stopped_at),
                                                           "executed": [],
                                                           "timestamp": end})
        await self.broadcast_status()
        await self.send(sid, "executing", {"node": None, "prompt_id": pid})


def _progress_state(prompt_id: str, seen: _Seen, *, running: bool, failed: bool = False) -> dict[str, Any]:
    """``progress_state``: the nodes that ran (``finished``) and the running one (its value: the prompt's percent)."""
    def entry(node: str, value: float, state: str) -> dict[str, Any]:
        return {"value": value, "max": 100, "state": state, "node_id": node, "prompt_id": prompt_id,
                "display_node_id": node, "parent_node_id": None, "real_node_id": node}

    nodes = {node: entry(node, 100, "finished") for node in seen.finished_nodes}
    if seen.node is not None:
        state = "running" if running else "error" if failed else "finished"
        nodes[seen.node] = entry(seen.node, round(max(seen.progress, 0.0)) if running else 100, state)
    return {"prompt_id": prompt_id, "nodes": nodes}


def _flags_of(text: str) -> dict[str, Any]:
    """The client's feature flags from its first message (``{"type": "feature_flags", "data": {...}}``)."""
    try:
        message = jsonio.loads(text)
    except ValueError:  # jsonio.JsonRefused: broken, too deep, not finite...
        return {}
    data = message.get("data") if isinstance(message, dict) and message.get("type") == "feature_flags" else None
    return data if isinstance(data, dict) else {}


def _class_of(graph: dict[str, Any], node_id: str | None) -> str | None:
    node = graph.get(node_id) if node_id is not None else None
    return node.get("class_type") if isinstance(node, dict) else None


async def _stopped_within(stopping: asyncio.Event, seconds: float) -> bool:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stopping.wait()
    return stopping.is_set()


def _now_ms() -> int:
    return int(time.time() * 1000)


SOCKETS = web.AppKey("comfy_prompt_sockets", PromptSockets)


async def _start(app: web.Application) -> None:
    await app[SOCKETS].start(app.get(LOGS))


async def _stop(app: web.Application) -> None:
    await app[SOCKETS].stop()


async def websocket(request: web.Request) -> web.WebSocketResponse:
    return await request.app[SOCKETS].handle(request)


def setup(app: web.Application) -> None:
    """The sockets' translation starts and stops with the application."""
    app[SOCKETS] = PromptSockets(app[SERVICES])
    app.on_startup.append(_start)
    app.on_shutdown.append(_stop)


def add_routes(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_get(f"{prefix}/ws", websocket)
