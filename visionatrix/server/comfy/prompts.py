"""``POST /prompt``: ComfyUI's prompts queued as our tasks (``comfyui_api.md`` §1.2); the queue and history routes
are in ``queue_history.py``.

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

from visionatrix.errors import NotFound
from visionatrix.executor.validation import validate
from visionatrix.nodes.context import NodeContext, use
from visionatrix.queue.models import FileRecord
from visionatrix.queue.prompts import Prompt, PromptTasks
from visionatrix.server import parsing
from visionatrix.server.comfy.paths import BadName, ComfyFolders, folders_for, split_annotation
from visionatrix.server.errors import BadRequest, TooManyRequests, UnsupportedMediaType
from visionatrix.server.identity import identity
from visionatrix.server.services import SERVICES, Services
from visionatrix.server.task_owners import TASK_OWNERS, check_pending_limit, check_task_owner
from visionatrix.server.webhooks.targets import check_webhook
from visionatrix.storage.info import file_info

SENSITIVE = ("auth_token_comfy_org", "api_key_comfy_org", "webhook_url", "webhook_headers")
"""``extra_data`` keys never stored nor shown (a webhook goes to the task's own column, its headers never shown)."""


def add_routes(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_post(f"{prefix}/prompt", post_prompt)


def prompt_tasks(request: web.Request) -> PromptTasks:
    prompts = request.app[SERVICES].prompts
    assert prompts is not None
    return prompts


def comfy_error(kind: str, message: str, details: str = "", status: int = 400,
                 node_errors: dict[str, Any] | None = None) -> web.Response:
    return web.json_response({"error": {"type": kind, "message": message, "details": details, "extra_info": {}},
                              "node_errors": node_errors or {}}, status=status)


class _BadBody(ValueError):
    """A request body that is not a JSON object (the route answers 400, or 415 for a content type that is not
    JSON, with the message)."""

    def __init__(self, message: str, kind: str = "invalid_json", status: int = 400) -> None:
        super().__init__(message)
        self.kind, self.status = kind, status


async def json_value(request: web.Request) -> Any:
    """The body as JSON under :mod:`visionatrix.server.jsonio`'s rules; None when it is empty. A body that breaks
    them, or is not typed JSON (from a web page; scripts may send it untyped), is :class:`_BadBody`."""
    try:
        return await parsing.read_json(request, optional=True, scripts_ok=True)
    except UnsupportedMediaType as exc:
        raise _BadBody(exc.message, exc.code, 415) from None
    except BadRequest as exc:
        raise _BadBody(exc.message) from None


async def json_body(request: web.Request) -> dict[str, Any] | None:
    """The body's JSON object; None when the body is empty (ComfyUI's routes treat that as "nothing given"). A body
    :func:`_json_value` refuses, or JSON but not an object, is :class:`_BadBody`: nothing is done on a guess."""
    body = await json_value(request)
    if body is not None and not isinstance(body, dict):
        raise _BadBody(f"the body must be a JSON object, got {type(body).__name__}")
    return body


def reads_json(handler: Callable[[web.Request], Awaitable[web.Response]],
                ) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``handler``, answering 400 (ComfyUI's error shape, type ``invalid_json``) to a body :func:`_json_body`
    refuses (415 ``unsupported_media_type`` to one that is not typed JSON)."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except _BadBody as exc:
            return comfy_error(exc.kind, str(exc), status=exc.status)

    return wrapped


# -- POST /prompt ------------------------------------------------------------------------------------------------


async def post_prompt(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    try:
        body = await json_value(request)
    except _BadBody as exc:
        message = "Invalid JSON in the request body" if exc.status == 400 else str(exc)
        return comfy_error(exc.kind, message, str(exc), status=exc.status)
    if not isinstance(body, dict) or "prompt" not in body:
        return comfy_error("no_prompt", "No prompt provided", "No prompt provided")
    graph = body["prompt"]
    if not isinstance(graph, dict) or not graph:
        return comfy_error("invalid_prompt", "Invalid prompt", "the prompt must be a JSON object of nodes")
    if len(graph) > services.security.max_graph_nodes:
        return comfy_error("too_many_nodes", "Prompt too large", f"the prompt has {len(graph)} nodes; at most "
                            f"{services.security.max_graph_nodes} are taken (VIX_MAX_GRAPH_NODES)")
    prompt_id = body.get("prompt_id") or str(uuid.uuid4())
    if not canonical_uuid(prompt_id):
        return comfy_error("invalid_prompt_id", "Invalid prompt_id", f"{prompt_id!r} is not a canonical UUID")
    if await prompt_tasks(request).get(prompt_id) is not None:
        return comfy_error("duplicate_prompt_id", "Duplicate prompt_id", f"{prompt_id} was queued before")
    targets = body.get("partial_execution_targets")
    if targets is not None and (not isinstance(targets, list) or not all(isinstance(t, str) for t in targets)):
        return comfy_error("invalid_targets", "Invalid partial_execution_targets", "expected a list of node ids")
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
    webhook_problems: dict[str, str] = {}
    webhook = (check_webhook(given.get("webhook_url"), given.get("webhook_headers"), webhook_problems)
               if isinstance(given, dict) else None)
    if webhook_problems:
        return comfy_error("invalid_webhook", "Invalid webhook in extra_data",
                            "; ".join(f"{name}: {why}" for name, why in webhook_problems.items()))
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
        return comfy_error(exc.code, str(exc), status=429)
    try:
        task_id = await _queue(services, prompt_tasks(request), prompt, inputs, caller.owner_id, webhook)
    except IntegrityError:  # the same prompt_id queued at the same moment
        return comfy_error("duplicate_prompt_id", "Duplicate prompt_id", f"{prompt_id} was queued before")
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
                 inputs: list[tuple[Path, FileRecord]], owner_id: int | None,
                 webhook: dict[str, Any] | None = None) -> int:
    """The prompt's task, its input files copied into its folder inside the creating transaction."""
    placed: list[int] = []

    async def place(task_ids: list[int]) -> None:
        (task_id,) = task_ids
        placed.append(task_id)
        for source, record in inputs:
            target = services.storage.destination(task_id, "input", record.name)
            await asyncio.to_thread(shutil.copyfile, source, target)

    try:
        return await prompts.create(prompt, [record for _, record in inputs], before_commit=place, owner_id=owner_id,
                                    webhook=webhook)
    except BaseException:
        for task_id in placed:
            with contextlib.suppress(OSError):
                services.storage.delete_task(task_id)
        raise
