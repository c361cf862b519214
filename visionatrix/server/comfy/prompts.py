"""``prompt``, ``queue``, ``interrupt`` and ``history``: ComfyUI's queue on ours (``comfyui_api.md`` §1.2 to §1.4).

``POST /prompt`` validates the graph against the server's node registry (ComfyUI's error shapes and codes), copies
the images its ``LoadImage`` nodes name from the editor's input folder into the new task's input folder, and
queues one task whose ``flow`` is the graph's node set (``queue/prompts.py``): any worker with every node type of
the graph may take it. The task shows in our own task API as well.

Errors here follow ComfyUI, not our ``{"error", "message", "details"}``: clients parse ComfyUI's shapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy.exc import IntegrityError

from visionatrix.errors import Conflict, NotFound
from visionatrix.executor.validation import validate
from visionatrix.nodes.context import NodeContext, use
from visionatrix.queue.models import FileRecord, TaskStatus
from visionatrix.queue.prompts import Prompt, PromptRecord, PromptTasks
from visionatrix.server import parsing, views
from visionatrix.server.comfy import records
from visionatrix.server.comfy.paths import BadName, ComfyFolders, folders_for, split_annotation
from visionatrix.server.errors import BadRequest, TooManyRequests, UnsupportedMediaType
from visionatrix.server.identity import identity
from visionatrix.server.services import SERVICES, Services
from visionatrix.server.task_owners import TASK_OWNERS, check_pending_limit, check_task_owner
from visionatrix.storage.info import file_info

SENSITIVE = ("auth_token_comfy_org", "api_key_comfy_org")
"""``extra_data`` keys never stored nor shown."""
WAITING = (TaskStatus.PENDING, TaskStatus.RUNNING)
QUEUE_PAGE = 1000
"""The most pending prompts one ``GET /queue`` lists (``?limit=``, ``?offset=`` page further)."""
DONE = (TaskStatus.FINISHED, TaskStatus.FAILED, TaskStatus.CANCELLED)
HISTORY_PAGE = 10_000
"""The most entries one ``GET /history`` lists (a larger ``max_items`` is taken as this)."""


def add_routes(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_post(f"{prefix}/prompt", post_prompt)
    router.add_get(f"{prefix}/prompt", get_prompt)
    router.add_get(f"{prefix}/queue", get_queue)
    router.add_post(f"{prefix}/queue", post_queue)
    router.add_post(f"{prefix}/interrupt", post_interrupt)
    router.add_post(f"{prefix}/free", post_free)
    router.add_get(f"{prefix}/history", get_history)
    router.add_post(f"{prefix}/history", post_history)
    router.add_get(f"{prefix}/history/{{prompt_id}}", get_history_entry)


def _prompts(request: web.Request) -> PromptTasks:
    prompts = request.app[SERVICES].prompts
    assert prompts is not None
    return prompts


def _comfy_error(kind: str, message: str, details: str = "", status: int = 400,
                 node_errors: dict[str, Any] | None = None) -> web.Response:
    return web.json_response({"error": {"type": kind, "message": message, "details": details, "extra_info": {}},
                              "node_errors": node_errors or {}}, status=status)


class _BadBody(ValueError):
    """A request body that is not a JSON object (the route answers 400, or 415 for a content type that is not
    JSON, with the message)."""

    def __init__(self, message: str, kind: str = "invalid_json", status: int = 400) -> None:
        super().__init__(message)
        self.kind, self.status = kind, status


async def _json_value(request: web.Request) -> Any:
    """The body as JSON under :mod:`visionatrix.server.jsonio`'s rules; None when it is empty. A body that breaks
    them, or is not typed JSON (from a web page; scripts may send it untyped), is :class:`_BadBody`."""
    try:
        return await parsing.read_json(request, optional=True, scripts_ok=True)
    except UnsupportedMediaType as exc:
        raise _BadBody(exc.message, exc.code, 415) from None
    except BadRequest as exc:
        raise _BadBody(exc.message) from None


async def _json_body(request: web.Request) -> dict[str, Any] | None:
    """The body's JSON object; None when the body is empty (ComfyUI's routes treat that as "nothing given"). A body
    :func:`_json_value` refuses, or JSON but not an object, is :class:`_BadBody`: nothing is done on a guess."""
    body = await _json_value(request)
    if body is not None and not isinstance(body, dict):
        raise _BadBody(f"the body must be a JSON object, got {type(body).__name__}")
    return body


def _reads_json(handler: Callable[[web.Request], Awaitable[web.Response]],
                ) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``handler``, answering 400 (ComfyUI's error shape, type ``invalid_json``) to a body :func:`_json_body`
    refuses (415 ``unsupported_media_type`` to one that is not typed JSON)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except _BadBody as exc:
            return _comfy_error(exc.kind, str(exc), status=exc.status)

    return wrapped


# -- POST /prompt ------------------------------------------------------------------------------------------------


async def post_prompt(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    try:
        body = await _json_value(request)
    except _BadBody as exc:
        message = "Invalid JSON in the request body" if exc.status == 400 else str(exc)
        return _comfy_error(exc.kind, message, str(exc), status=exc.status)
    if not isinstance(body, dict) or "prompt" not in body:
        return _comfy_error("no_prompt", "No prompt provided", "No prompt provided")
    graph = body["prompt"]
    if not isinstance(graph, dict) or not graph:
        return _comfy_error("invalid_prompt", "Invalid prompt", "the prompt must be a JSON object of nodes")
    if len(graph) > services.security.max_graph_nodes:
        return _comfy_error("too_many_nodes", "Prompt too large", f"the prompt has {len(graph)} nodes; at most "
                            f"{services.security.max_graph_nodes} are taken (VIX_MAX_GRAPH_NODES)")
    prompt_id = body.get("prompt_id") or str(uuid.uuid4())
    if not canonical_uuid(prompt_id):
        return _comfy_error("invalid_prompt_id", "Invalid prompt_id", f"{prompt_id!r} is not a canonical UUID")
    if await _prompts(request).get(prompt_id) is not None:
        return _comfy_error("duplicate_prompt_id", "Duplicate prompt_id", f"{prompt_id} was queued before")
    targets = body.get("partial_execution_targets")
    if targets is not None and (not isinstance(targets, list) or not all(isinstance(t, str) for t in targets)):
        return _comfy_error("invalid_targets", "Invalid partial_execution_targets", "expected a list of node ids")
    folders = folders_for(request)
    folder = folders.input_dir
    validated = await asyncio.to_thread(_validate, services, graph, targets, folder)
    if validated.error is not None and not validated.outputs:
        return web.json_response({"error": validated.error, "node_errors": validated.node_errors}, status=400)
    inputs, problems = await asyncio.to_thread(_inputs, services, graph, folders)
    problems.update(await _foreign_outputs(request, inputs))
    if problems:
        first = next(iter(problems.values()))["errors"][0]
        return web.json_response({"error": first, "node_errors": problems}, status=400)
    given = body.get("extra_data")
    extra_data = {key: value for key, value in (given if isinstance(given, dict) else {}).items()
                  if key not in SENSITIVE}
    client_id = body.get("client_id") if isinstance(body.get("client_id"), str) else None
    if client_id is not None:
        extra_data["client_id"] = client_id
    extra_data["create_time"] = int(time.time() * 1000)
    number = body.get("number")
    front = bool(body.get("front"))
    extra: dict[str, Any] = {"extra_data": extra_data, "outputs": validated.outputs}
    if isinstance(number, int | float) and not isinstance(number, bool):
        extra["number"] = number
    node_types = frozenset(str(node["class_type"]) for node in graph.values()
                           if isinstance(node, dict) and "class_type" in node)
    prompt = Prompt(prompt_id=prompt_id, graph=graph, node_types=node_types, client_id=client_id, extra=extra,
                    priority=1 if front else 0)
    caller = identity(request)
    try:
        await check_pending_limit(services, caller, 1)
    except TooManyRequests as exc:
        return _comfy_error(exc.code, str(exc), status=429)
    try:
        task_id = await _queue(services, _prompts(request), prompt, inputs, caller.owner_id)
    except IntegrityError:  # the same prompt_id queued at the same moment
        return _comfy_error("duplicate_prompt_id", "Duplicate prompt_id", f"{prompt_id} was queued before")
    request.app[TASK_OWNERS].remember(task_id, caller.owner_id)
    return web.json_response({"prompt_id": prompt_id, "number": extra.get("number", task_id),
                              "node_errors": validated.node_errors})


def canonical_uuid(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _validate(services: Services, graph: dict[str, Any], targets: list[str] | None, folder: Path) -> Any:
    folder.mkdir(parents=True, exist_ok=True)
    with use(NodeContext(input_dir=folder, max_image_pixels=services.max_image_pixels, check_model_files=False)):
        return validate(graph, services.registry, targets=targets)


def _inputs(services: Services, graph: dict[str, Any], folders: ComfyFolders
            ) -> tuple[list[tuple[Path, FileRecord]], dict[str, Any]]:
    """The files the graph's image inputs name (``(source, record)``), or the node errors of those that are not
    there. A value naming the output or temp folder (``x.png [output]``) is rewritten to the copy's name in the
    task's input folder (``output/x.png``)."""
    found: dict[str, tuple[Path, FileRecord]] = {}
    problems: dict[str, Any] = {}
    info = services.registry.object_info()
    for node_id, node in graph.items():
        if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            continue
        spec = info.get(str(node.get("class_type")), {}).get("input", {})
        for section in ("required", "optional"):
            for name, entry in (spec.get(section) or {}).items():
                options = entry[1] if isinstance(entry, list | tuple) and len(entry) > 1 else {}
                value = node["inputs"].get(name)
                if not (isinstance(options, dict) and options.get("image_upload")) or not isinstance(value, str):
                    continue
                try:
                    source = folders.resolve_annotated(value)
                except (BadName, NotFound) as exc:
                    problems[node_id] = {"errors": [{"type": "value_not_in_list", "message": "Value not in list",
                                                     "details": f"{name}: {value!r}: {exc}",
                                                     "extra_info": {"input_name": name, "input_config": None,
                                                                    "received_value": value}}],
                                         "dependent_outputs": [], "class_type": node.get("class_type")}
                    continue
                relative, kind = split_annotation(value)
                if kind is not None and kind != "input":
                    relative = f"{kind}/{relative}"
                    node["inputs"][name] = relative
                if relative not in found:
                    described = file_info(source)
                    found[relative] = (source, FileRecord(kind="input", name=relative, node_id=str(node_id),
                                                          size_bytes=described.size_bytes, sha256=described.sha256,
                                                          param=name))
    return list(found.values()), problems


async def _foreign_outputs(request: web.Request, inputs: list[tuple[Path, FileRecord]]) -> dict[str, Any]:
    """Node errors for image inputs naming another user's task output (``<task id>/x.png [output]``): to a user
    they do not exist."""
    problems: dict[str, Any] = {}
    for _source, record in inputs:
        kind, _, rest = record.name.partition("/")
        task_part = rest.partition("/")[0]
        if kind != "output" or not task_part.isdigit():
            continue
        try:
            await check_task_owner(request, int(task_part))
        except NotFound:
            problems[str(record.node_id)] = {
                "errors": [{"type": "value_not_in_list", "message": "Value not in list",
                            "details": f"{record.param}: {record.name!r}: no such file",
                            "extra_info": {"input_name": record.param, "input_config": None,
                                           "received_value": record.name}}],
                "dependent_outputs": [], "class_type": None}
    return problems


async def _queue(services: Services, prompts: PromptTasks, prompt: Prompt,
                 inputs: list[tuple[Path, FileRecord]], owner_id: int | None) -> int:
    """The prompt's task, its input files copied into its folder inside the creating transaction."""
    placed: list[int] = []

    async def place(task_ids: list[int]) -> None:
        (task_id,) = task_ids
        placed.append(task_id)
        for source, record in inputs:
            target = services.storage.destination(task_id, "input", record.name)
            await asyncio.to_thread(shutil.copyfile, source, target)

    try:
        return await prompts.create(prompt, [record for _, record in inputs], before_commit=place, owner_id=owner_id)
    except BaseException:
        for task_id in placed:
            with contextlib.suppress(OSError):
                services.storage.delete_task(task_id)
        raise


# -- GET /prompt, /queue, /interrupt -------------------------------------------------------------------------------


async def queue_remaining(prompts: PromptTasks, owner_id: int | None = None) -> int:
    return await prompts.count(WAITING, owner_id=owner_id)


async def get_prompt(request: web.Request) -> web.Response:
    remaining = await queue_remaining(_prompts(request), identity(request).owner_filter)
    return web.json_response({"exec_info": {"queue_remaining": remaining}})


async def get_queue(request: web.Request) -> web.Response:
    """ComfyUI's queue, the caller's prompts only (an admin's: everyone's). ``?limit=`` (default and most
    ``QUEUE_PAGE``) and ``?offset=`` page the pending list; ``queue_pending_total`` counts all of it."""
    problems: dict[str, str] = {}
    limit = parsing.int_value("limit", request.query.get("limit", str(QUEUE_PAGE)), low=1, high=QUEUE_PAGE,
                              problems=problems)
    offset = parsing.int_value("offset", request.query.get("offset", "0"), low=0, high=parsing.MAX_ROW_ID,
                               problems=problems)
    if problems or limit is None or offset is None:
        lines = "; ".join(f"{name}: {why}" for name, why in problems.items())
        return _comfy_error("invalid_query", f"the query is malformed: {lines}")
    prompts, owner = _prompts(request), identity(request).owner_filter
    running = await prompts.list([TaskStatus.RUNNING], limit=QUEUE_PAGE, owner_id=owner)
    pending = await prompts.list([TaskStatus.PENDING], limit=limit, offset=offset, owner_id=owner)
    total = await prompts.count([TaskStatus.PENDING], owner_id=owner)
    return web.json_response({"queue_running": [records.queue_item(p.task, p.prompt_id, p.extra) for p in running],
                              "queue_pending": [records.queue_item(p.task, p.prompt_id, p.extra) for p in pending],
                              "queue_pending_total": total})


@_reads_json
async def post_queue(request: web.Request) -> web.Response:
    """``{"clear": true}`` removes every pending prompt; ``{"delete": [prompt_id, ...]}`` those (pending only)."""
    body = await _json_body(request)
    prompts = _prompts(request)
    if isinstance(body, dict):
        if body.get("clear") is True:
            await _delete(request, await prompts.list([TaskStatus.PENDING], owner_id=identity(request).owner_filter))
        if isinstance(body.get("delete"), list):
            chosen = [await _visible(request, str(i)) for i in body["delete"] if isinstance(i, str)]
            await _delete(request, [p for p in chosen if p is not None and p.task.status is TaskStatus.PENDING])
    return web.Response(status=200)


async def _visible(request: web.Request, prompt_id: str) -> PromptRecord | None:
    """The prompt, when the caller may see it (a user: their own); None otherwise."""
    found = await _prompts(request).get(prompt_id)
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


@_reads_json
async def post_interrupt(request: web.Request) -> web.Response:
    """With ``{"prompt_id"}``: cancel that prompt if it runs. Without: every running prompt of the ``client_id``
    the body names, or every running prompt."""
    body = await _json_body(request)
    prompts = _prompts(request)
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


@_reads_json
async def post_free(request: web.Request) -> web.Response:
    """ComfyUI's ``/free``: ``{"unload_models": true}`` (or ``free_memory``) asks every worker that is not offline
    to unload the models it holds (with its next report); a body asking neither does nothing."""
    body = await _json_body(request)
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
        return _comfy_error("invalid_query", "; ".join(f"{name}: {why}" for name, why in problems.items()))
    max_items = None if max_items is None else min(max_items, HISTORY_PAGE)
    prompts, owner = _prompts(request), identity(request).owner_filter
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


@_reads_json
async def post_history(request: web.Request) -> web.Response:
    """``{"clear": true}`` deletes every finished prompt (rows and files); ``{"delete": [prompt_id, ...]}`` those."""
    body = await _json_body(request)
    prompts = _prompts(request)
    if isinstance(body, dict):
        if body.get("clear") is True:
            await _delete(request, await prompts.list(DONE, owner_id=identity(request).owner_filter))
        if isinstance(body.get("delete"), list):
            chosen = [await _visible(request, str(i)) for i in body["delete"] if isinstance(i, str)]
            await _delete(request, [p for p in chosen if p is not None and p.task.status in DONE])
    return web.Response(status=200)
