"""``HttpSource``: tasks from the server's worker API (``docs/design/worker-protocol.md``, part 2) — Server-mode
workers (``VIX_MODE=WORKER`` with ``VIX_HOST=http://server:port``), which reach neither the database nor the server's
files.

Each task gets ``temp_dir/<task_id>/input`` (its inputs, downloaded and checked by SHA-256) and
``temp_dir/<task_id>/output`` (what the executor writes, uploaded one file at a time by ``finish``);
``cleanup`` removes ``temp_dir/<task_id>``, and at construction every task folder a crash left under ``temp_dir``
is removed. ``http_transfer`` holds the retries: ``claim`` and ``report`` retry a server that is down forever, a
task's calls until its lease would have run out (then ``LeaseLost``).

A task's lease is followed on this worker's own clock: ``lease_expires_at`` of a claimed task is converted from the
server's clock (using the answer's ``Date``), and every answer that extended the lease (heartbeat, input download,
output upload) moves the local deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import secrets
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from visionatrix.errors import LeaseLost, VisionatrixError
from visionatrix.queue.models import ClaimedTask, LeaseState, WorkerRecord
from visionatrix.storage.names import relative_parts
from visionatrix.worker.http_transfer import HttpTransport
from visionatrix.worker.outputs import run_temp_dir

log = logging.getLogger(__name__)

TASKS = "/vapi/worker/tasks"
MAX_WAIT_S = 30.0
"""The longest long poll the server accepts."""
CLAIM_MARGIN_S = 10.0
"""How much longer than the long poll a claim may take before it counts as lost."""
MIN_LEASE_S = 1.0
PREVIEW_TIMEOUT_S = 10.0
WITHDRAW_FOR_S = 60.0
"""How long a cancelled claim's withdrawal is retried (after that the task's lease has run out anyway)."""
CLOSE_WAIT_S = 5.0


@dataclass
class RemoteFile:
    """An input of a claimed task, as the server describes it."""

    name: str
    size_bytes: int
    sha256: str
    url: str


@dataclass
class HttpTask(ClaimedTask):
    """A task claimed over HTTP: its inputs on the server, and its lease on this worker's clock."""

    inputs: list[RemoteFile] = field(default_factory=list)
    lease_s: float = 60.0
    """The lease's length, as the claim showed it."""
    deadline: float = 0.0
    """``time.monotonic()`` when the lease runs out unless it is extended."""

    def renewed(self) -> None:
        """The server just extended the lease."""
        self.deadline = time.monotonic() + self.lease_s

    def lease_deadline(self) -> float:
        return self.deadline


class HttpSource:
    """Tasks of the server at ``base_url`` (``http://host:port``); ``auth``: ``WORKER_AUTH``; temporary files under
    ``temp_dir``; ``retry_max_s``: the longest pause between retries."""

    mode = "WORKER_HTTP"

    def __init__(self, base_url: str, *, auth: str | None, temp_dir: Path, retry_max_s: float = 10.0,
                 timeout_s: float = 60.0) -> None:
        self.transport = HttpTransport(base_url, auth=auth, retry_max_s=retry_max_s, timeout_s=timeout_s)
        self.temp_dir = Path(temp_dir)
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self._withdrawals: set[asyncio.Task[None]] = set()
        self._commands: list[dict[str, Any]] = []
        self._remove_leftovers()

    def _remove_leftovers(self) -> None:
        """Remove the task folders an earlier run left (it crashed or was killed); anything else is left alone."""
        for entry in self.temp_dir.iterdir():
            if entry.name.isdigit() and entry.is_dir() and not entry.is_symlink():
                log.info("removing %s, left by an earlier run", entry)
                shutil.rmtree(entry, ignore_errors=True)
            else:
                log.warning("%s is not a task folder of this worker; left alone", entry)

    def task_dir(self, task_id: int) -> Path:
        return self.temp_dir / str(int(task_id))

    # -- claim and report: retried until the server answers ----------------------------------------------------

    async def claim(self, worker_id: str, flows: Sequence[str], last_flow: str | None,
                    wait_s: float, *, ahead: bool = False) -> ClaimedTask | None:
        wait_s = min(MAX_WAIT_S, max(0.0, wait_s))
        claim_id = secrets.token_hex(16)  # the same on every retry: a lost reply is answered again, not re-claimed
        body: dict[str, Any] = {"worker_id": worker_id, "installed_flows": list(flows), "last_flow": last_flow,
                                "wait_s": wait_s, "claim_id": claim_id}
        if ahead:
            body["ahead"] = True
        timeout_s = wait_s + CLAIM_MARGIN_S
        session = self.transport.session
        url = self.transport.url("/vapi/worker/claim")

        async def attempt() -> tuple[Any, datetime | None]:
            async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
                await self.transport.check(response, None)
                return await response.json(), _server_time(response.headers.get("Date"))

        try:
            answer, server_now = await self.transport.retrying("claim", attempt)
        except asyncio.CancelledError:
            self._withdraw_later(worker_id, claim_id)
            raise
        task = answer.get("task") if isinstance(answer, dict) else None
        return None if task is None else _claimed(task, server_now)

    def _withdraw_later(self, worker_id: str, claim_id: str) -> None:
        """A claim was cancelled while its request was out: tell the server, so a task it may have claimed for this
        worker is released now rather than when its lease runs out. In the background, retried for a while."""
        give_up_at = time.monotonic() + WITHDRAW_FOR_S

        async def withdraw() -> None:
            with contextlib.suppress(LeaseLost, VisionatrixError, aiohttp.ClientError):
                await self.transport.call("POST", "/vapi/worker/claim/withdraw",
                                          {"worker_id": worker_id, "claim_id": claim_id}, what="claim withdrawal",
                                          deadline=lambda: give_up_at)

        job = asyncio.create_task(withdraw())
        self._withdrawals.add(job)
        job.add_done_callback(self._withdrawals.discard)

    async def report(self, record: WorkerRecord) -> list[str] | None:
        body: dict[str, Any] = {"mode": record.mode, "device": record.device,
                                "installed_flows": list(record.installed_flows),
                                "current_task_id": record.current_task_id}
        if record.node_types is not None:
            body["node_types"] = record.node_types
        if record.resources is not None:
            body["resources"] = record.resources
        if record.stopped_at is not None:
            body["stopping"] = True
        if record.models is not None:
            body["models"] = record.models
        answer = await self.transport.call("PUT", f"/vapi/worker/workers/{quote(record.worker_id, safe='')}", body,
                                           what="report")
        commands = answer.get("commands") if isinstance(answer, dict) else None
        self._commands.extend(command for command in commands or () if isinstance(command, dict))
        allowed = answer.get("allowed_flows") if isinstance(answer, dict) else None
        return None if allowed is None else [str(flow) for flow in allowed]

    async def take_commands(self, worker_id: str) -> list[dict[str, Any]]:
        """The commands that came with the last reports (the server hands them out with its answer to a report)."""
        commands, self._commands = self._commands, []
        return commands

    # -- a task's calls: retried while its lease lasts ---------------------------------------------------------

    async def prepare(self, task: ClaimedTask) -> tuple[Path, Path]:
        held = _http(task)
        input_dir, output_dir = self.task_dir(task.id) / "input", self.task_dir(task.id) / "output"
        await asyncio.to_thread(shutil.rmtree, output_dir, True)
        for folder in (input_dir, output_dir):
            folder.mkdir(parents=True, exist_ok=True)
        for remote in held.inputs:
            try:
                dest = input_dir.joinpath(*relative_parts(remote.name))
            except ValueError as exc:
                raise VisionatrixError(f"the server named an input {remote.name!r}: {exc}") from None
            dest.parent.mkdir(exist_ok=True)
            await self.transport.download(remote.url, dest, lease_token=task.lease_token, sha256=remote.sha256,
                                          what=f"task {task.id}: download of {remote.name}",
                                          deadline=held.lease_deadline, task_id=task.id)
            held.renewed()
        return input_dir, output_dir

    async def start(self, task: ClaimedTask) -> LeaseState:
        answer = await self._task_call(task, "start", {"lease_token": task.lease_token})
        _http(task).renewed()
        return LeaseState(cancel_requested=bool(answer.get("cancel_requested")))

    async def preview(self, task: ClaimedTask, node_id: str, image: bytes) -> None:
        """One attempt, no retries: a lost preview is replaced by the next one."""
        headers = {"X-Vix-Lease": task.lease_token, "X-Vix-Node": node_id, "Content-Type": "image/jpeg"}
        async with self.transport.session.post(self.transport.url(f"{TASKS}/{task.id}/preview"), data=image,
                                               headers=headers,
                                               timeout=aiohttp.ClientTimeout(total=PREVIEW_TIMEOUT_S)) as response:
            await self.transport.check(response, task.id)

    async def heartbeat(self, task: ClaimedTask, progress: float | None, current_node: str | None) -> LeaseState:
        body = {"lease_token": task.lease_token, "progress": progress, "current_node": current_node}
        answer = await self._task_call(task, "heartbeat", body)
        _http(task).renewed()
        return LeaseState(cancel_requested=bool(answer.get("cancel_requested")))

    async def finish(self, task: ClaimedTask, timings: dict[str, float],
                     outputs: list[tuple[str, str | None]], *, peak_vram_bytes: int | None = None,
                     temps: Sequence[tuple[str, str | None]] = ()) -> None:
        """Upload the outputs (``PUT .../outputs/{name}``) and the temporary outputs (``PUT .../temps/{name}``, from
        ``outputs.run_temp_dir``), then ``finish`` naming them."""
        output_dir = self.task_dir(task.id) / "output"
        await self._upload(task, "outputs", output_dir, outputs)
        await self._upload(task, "temps", run_temp_dir(output_dir), temps)
        body = {"lease_token": task.lease_token, "timings": timings,
                "outputs": [{"name": name, "node_id": node_id} for name, node_id in outputs],
                **({"temps": [{"name": name, "node_id": node_id} for name, node_id in temps]} if temps else {}),
                **_peak(peak_vram_bytes)}
        await self._task_call(task, "finish", body)

    async def _upload(self, task: ClaimedTask, route: str, folder: Path,
                      files: Sequence[tuple[str, str | None]]) -> None:
        held = _http(task)
        for name, _node_id in files:
            await self.transport.upload(f"{TASKS}/{task.id}/{route}/{quote(name, safe='/')}",
                                        folder.joinpath(*relative_parts(name)), lease_token=task.lease_token,
                                        what=f"task {task.id}: upload of {name}", deadline=held.lease_deadline,
                                        task_id=task.id)
            held.renewed()

    async def fail(self, task: ClaimedTask, *, node_id: str | None, class_type: str | None, message: str,
                   traceback: str | None, peak_vram_bytes: int | None = None) -> None:
        await self._task_call(task, "fail", {"lease_token": task.lease_token, "node_id": node_id,
                                             "class_type": class_type, "message": message, "traceback": traceback,
                                             **_peak(peak_vram_bytes)})

    async def cancelled(self, task: ClaimedTask) -> None:
        await self._task_call(task, "cancelled", {"lease_token": task.lease_token})

    async def release(self, task: ClaimedTask) -> None:
        await self._task_call(task, "release", {"lease_token": task.lease_token})

    async def _task_call(self, task: ClaimedTask, action: str, body: dict[str, Any]) -> Any:
        return await self.transport.call("POST", f"{TASKS}/{task.id}/{action}", body, what=f"task {task.id}: {action}",
                                         deadline=_http(task).lease_deadline, task_id=task.id)

    async def cleanup(self, task: ClaimedTask) -> None:
        await asyncio.to_thread(shutil.rmtree, self.task_dir(task.id), True)

    async def close(self) -> None:
        """Withdrawals still out get ``CLOSE_WAIT_S`` to reach the server, then the connections close."""
        if self._withdrawals:
            await asyncio.wait(list(self._withdrawals), timeout=CLOSE_WAIT_S)
            for job in list(self._withdrawals):
                job.cancel()
            await asyncio.gather(*self._withdrawals, return_exceptions=True)
        await self.transport.close()


def _peak(peak_vram_bytes: int | None) -> dict[str, int]:
    """``peak_vram_bytes`` for a finish or fail body, only when measured (a server older than the field refuses
    unknown fields; a CPU worker's outcome still reaches it)."""
    return {} if peak_vram_bytes is None else {"peak_vram_bytes": peak_vram_bytes}


def _http(task: ClaimedTask) -> HttpTask:
    if not isinstance(task, HttpTask):
        raise TypeError(f"task {task.id} was not claimed from an HttpSource")
    return task


def _server_time(date: str | None) -> datetime | None:
    """The server's clock from an HTTP ``Date`` header (None when missing or unreadable)."""
    if not date:
        return None
    try:
        return email.utils.parsedate_to_datetime(date).astimezone(UTC)
    except (TypeError, ValueError):
        return None


def _claimed(task: dict[str, Any], server_now: datetime | None) -> HttpTask:
    """The claim's ``TASK``, its lease converted to this worker's clock."""
    now = datetime.now(UTC)
    expires_at = datetime.fromisoformat(str(task["lease_expires_at"]))
    if expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    # ``Date`` has whole seconds (rounded down): the lease may be up to a second shorter than it looks
    lease_s = max(MIN_LEASE_S, (expires_at - (server_now or now)).total_seconds() - (1 if server_now else 0))
    held = HttpTask(id=int(task["id"]), flow=str(task["flow"]), graph=task["graph"], params=task.get("params") or {},
                    lease_token=str(task["lease_token"]), lease_expires_at=now + timedelta(seconds=lease_s),
                    attempt=int(task.get("attempt") or 0),
                    inputs=[RemoteFile(name=str(f["name"]), size_bytes=int(f.get("size_bytes") or 0),
                                       sha256=str(f.get("sha256") or ""), url=str(f["url"]))
                            for f in task.get("inputs") or []],
                    lease_s=lease_s)
    held.renewed()
    return held
