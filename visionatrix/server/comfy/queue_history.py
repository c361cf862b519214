"""``GET /prompt``, ``queue``, ``interrupt``, ``free`` and ``history``: ComfyUI's queue and history on our tasks
(``comfyui_api.md`` §1.2 to §1.4); ``POST /prompt`` is in ``prompts.py``. With sign-in on, every one of them shows
and touches only the caller's own prompts (an admin's: everyone's).
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from visionatrix.errors import Conflict, NotFound
from visionatrix.queue.models import TaskStatus
from visionatrix.queue.prompts import PromptRecord, PromptTasks
from visionatrix.server import parsing, views
from visionatrix.server.comfy import records
from visionatrix.server.comfy.prompts import comfy_error, json_body, prompt_tasks, reads_json
from visionatrix.server.identity import identity
from visionatrix.server.services import SERVICES

WAITING = (TaskStatus.PENDING, TaskStatus.CLAIMED, TaskStatus.RUNNING)
QUEUE_PAGE = 1000
"""The most pending prompts one ``GET /queue`` lists (``?limit=``, ``?offset=`` page further)."""
DONE = (TaskStatus.FINISHED, TaskStatus.FAILED, TaskStatus.CANCELLED)
HISTORY_PAGE = 10_000
"""The most entries one ``GET /history`` lists (a larger ``max_items`` is taken as this)."""


def add_routes(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_get(f"{prefix}/prompt", get_prompt)
    router.add_get(f"{prefix}/queue", get_queue)
    router.add_post(f"{prefix}/queue", post_queue)
    router.add_post(f"{prefix}/interrupt", post_interrupt)
    router.add_post(f"{prefix}/free", post_free)
    router.add_get(f"{prefix}/history", get_history)
    router.add_post(f"{prefix}/history", post_history)
    router.add_get(f"{prefix}/history/{{prompt_id}}", get_history_entry)


# -- GET /prompt, /queue, /interrupt -------------------------------------------------------------------------------


async def queue_remaining(prompts: PromptTasks, owner_id: int | None = None) -> int:
    return await prompts.count(WAITING, owner_id=owner_id)


async def get_prompt(request: web.Request) -> web.Response:
    remaining = await queue_remaining(prompt_tasks(request), identity(request).owner_filter)
    return web.json_response({"exec_info": {"queue_remaining": remaining}})


async def get_queue(request: web.Request) -> web.Response:
    """ComfyUI's queue, the caller's prompts only (an admin's: everyone's): ``queue_running`` the prompts executing
    now; ``queue_pending`` the claimed ones first (a busy worker holds them next), then the pending ones.
    ``?limit=`` (default and most ``QUEUE_PAGE``) and ``?offset=`` page the pending list; ``queue_pending_total``
    counts all of it."""
    problems: dict[str, str] = {}
    limit = parsing.int_value("limit", request.query.get("limit", str(QUEUE_PAGE)), low=1, high=QUEUE_PAGE,
                              problems=problems)
    offset = parsing.int_value("offset", request.query.get("offset", "0"), low=0, high=parsing.MAX_ROW_ID,
                               problems=problems)
    if problems or limit is None or offset is None:
        lines = "; ".join(f"{name}: {why}" for name, why in problems.items())
        return comfy_error("invalid_query", f"the query is malformed: {lines}")
    prompts, owner = prompt_tasks(request), identity(request).owner_filter
    running = await prompts.list([TaskStatus.RUNNING], limit=QUEUE_PAGE, owner_id=owner)
    claimed = await prompts.list([TaskStatus.CLAIMED], limit=QUEUE_PAGE, owner_id=owner)
    pending = claimed[offset:offset + limit]
    if len(pending) < limit:
        pending += await prompts.list([TaskStatus.PENDING], limit=limit - len(pending),
                                      offset=max(0, offset - len(claimed)), owner_id=owner)
    total = len(claimed) + await prompts.count([TaskStatus.PENDING], owner_id=owner)
    return web.json_response({"queue_running": [records.queue_item(p.task, p.prompt_id, p.extra) for p in running],
                              "queue_pending": [records.queue_item(p.task, p.prompt_id, p.extra) for p in pending],
                              "queue_pending_total": total})


@reads_json
async def post_queue(request: web.Request) -> web.Response:
    """``{"clear": true}`` removes every pending prompt; ``{"delete": [prompt_id, ...]}`` those (pending only)."""
    await _clear_or_delete(request, (TaskStatus.PENDING,))
    return web.Response(status=200)


async def _clear_or_delete(request: web.Request, statuses: tuple[TaskStatus, ...]) -> None:
    """``{"clear": true}``: every prompt of ``statuses`` the caller may see; ``{"delete": [ids]}``: those of them."""
    body = await json_body(request)
    if not isinstance(body, dict):
        return
    if body.get("clear") is True:
        await _delete(request, await prompt_tasks(request).list(statuses, owner_id=identity(request).owner_filter))
    if isinstance(body.get("delete"), list):
        chosen = [await _visible(request, str(i)) for i in body["delete"] if isinstance(i, str)]
        await _delete(request, [p for p in chosen if p is not None and p.task.status in statuses])


async def _visible(request: web.Request, prompt_id: str) -> PromptRecord | None:
    """The prompt, when the caller may see it (a user: their own); None otherwise."""
    found = await prompt_tasks(request).get(prompt_id)
    return found if found is not None and identity(request).may_see(found.task.owner_id) else None


async def _delete(request: web.Request, chosen: list[PromptRecord]) -> None:
    """Rows, then files (as ``DELETE /vapi/tasks/{id}``); a task that started meanwhile is left alone."""
    services = request.app[SERVICES]
    for prompt in chosen:
        try:
            await services.queue.delete(prompt.task.id)
        except (Conflict, NotFound):
            continue
        with contextlib.suppress(OSError):
            await asyncio.to_thread(services.storage.delete_task, prompt.task.id)


@reads_json
async def post_interrupt(request: web.Request) -> web.Response:
    """With ``{"prompt_id"}``: cancel that prompt if it runs. Without: every running prompt of the ``client_id``
    the body names, or every running prompt."""
    body = await json_body(request)
    prompts = prompt_tasks(request)
    running = await prompts.list([TaskStatus.RUNNING], owner_id=identity(request).owner_filter)
    if isinstance(body, dict) and isinstance(body.get("prompt_id"), str):
        running = [p for p in running if p.prompt_id == body["prompt_id"]]
    elif isinstance(body, dict) and isinstance(body.get("client_id"), str):
        running = [p for p in running if p.client_id == body["client_id"]]
    queue = request.app[SERVICES].queue
    for prompt in running:
        with contextlib.suppress(Conflict, NotFound):
            await queue.cancel(prompt.task.id)
    return web.Response(status=200)


@reads_json
async def post_free(request: web.Request) -> web.Response:
    """ComfyUI's ``/free``: ``{"unload_models": true}`` (or ``free_memory``) asks every worker that is not offline
    to unload the models it holds (with its next report); a body asking neither does nothing."""
    body = await json_body(request)
    if not isinstance(body, dict) or not (body.get("unload_models") or body.get("free_memory")):
        return web.Response(status=200)
    queue = request.app[SERVICES].queue
    for worker in await queue.list_workers():
        if views.worker_state(worker) != "offline":
            with contextlib.suppress(NotFound):
                await queue.queue_command(worker.worker_id, {"type": "free"})
    return web.Response(status=200)


# -- history -----------------------------------------------------------------------------------------------------


async def get_history(request: web.Request) -> web.Response:
    """``{prompt_id: entry}`` of finished prompts, oldest first; ``max_items`` alone: the newest that many."""
    problems: dict[str, str] = {}
    max_items = _int(request, "max_items", 0, problems)
    offset = _int(request, "offset", -parsing.MAX_ROW_ID, problems)
    if problems:
        return comfy_error("invalid_query", "; ".join(f"{name}: {why}" for name, why in problems.items()))
    max_items = None if max_items is None else min(max_items, HISTORY_PAGE)
    prompts, owner = prompt_tasks(request), identity(request).owner_filter
    if max_items is not None and (offset is None or offset < 0):
        done = list(reversed(await prompts.list(DONE, limit=max_items, newest_first=True, owner_id=owner)))
    else:
        done = await prompts.list(DONE, limit=max_items or HISTORY_PAGE, offset=max(offset or 0, 0), owner_id=owner)
    return web.json_response({p.prompt_id: records.history_entry(p.task, p.prompt_id, p.extra) for p in done})


def _int(request: web.Request, name: str, low: int, problems: dict[str, str]) -> int | None:
    """The query parameter ``name`` as a whole number from ``low`` (None when absent); the reason into
    ``problems``."""
    raw = request.query.get(name)
    return None if raw is None else parsing.int_value(name, raw, low=low, high=parsing.MAX_ROW_ID, problems=problems)


async def get_history_entry(request: web.Request) -> web.Response:
    found = await _visible(request, request.match_info["prompt_id"])
    if found is None or found.task.status not in DONE:
        return web.json_response({})
    return web.json_response({found.prompt_id: records.history_entry(found.task, found.prompt_id, found.extra)})


@reads_json
async def post_history(request: web.Request) -> web.Response:
    """``{"clear": true}`` deletes every finished prompt (rows and files); ``{"delete": [prompt_id, ...]}`` those."""
    await _clear_or_delete(request, DONE)
    return web.Response(status=200)
