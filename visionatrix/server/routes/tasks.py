"""Tasks: create (JSON or multipart with uploads), list, show, cancel, restart and delete."""

from __future__ import annotations

import asyncio
import logging
import shutil

from aiohttp import web

from visionatrix.queue.models import TaskStatus
from visionatrix.server import jsonio, parsing, views
from visionatrix.server.errors import BadRequest
from visionatrix.server.identity import identity
from visionatrix.server.services import SERVICES
from visionatrix.server.task_create import create_tasks as create
from visionatrix.server.task_owners import TASK_OWNERS, check_pending_limit, owned_task
from visionatrix.server.task_request import Staging, read_create_request
from visionatrix.storage.files import TaskStorage

log = logging.getLogger(__name__)

MAX_LIMIT = 500
QUERY_FIELDS = ("status", "flow", "limit", "offset")
RESTARTABLE = (TaskStatus.FAILED, TaskStatus.CANCELLED)


async def create_tasks(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    caller = identity(request)
    staging = Staging(services.storage)
    try:
        create_request = await read_create_request(request, staging)
        await check_pending_limit(services, caller, create_request.count)
        task_ids = await create(services, create_request, staging, owner_id=caller.owner_id)
    finally:
        staging.discard()
    owners = request.app[TASK_OWNERS]
    for task_id in task_ids:
        owners.remember(task_id, caller.owner_id)
    return web.json_response({"task_ids": task_ids}, status=201, dumps=jsonio.dumps)


async def list_tasks(request: web.Request) -> web.Response:
    query = request.query
    problems: dict[str, str] = {name: "unknown query parameter" for name in query if name not in QUERY_FIELDS}
    status = query.get("status")
    if status is not None and status not in {s.value for s in TaskStatus}:
        problems["status"] = f"{status!r} is not one of: {', '.join(s.value for s in TaskStatus)}"
    limit = parsing.int_value("limit", query.get("limit", "50"), low=1, high=MAX_LIMIT, problems=problems)
    offset = parsing.int_value("offset", query.get("offset", "0"), low=0, high=parsing.MAX_ROW_ID, problems=problems)
    if problems:
        lines = "; ".join(f"{name}: {why}" for name, why in problems.items())
        raise BadRequest("invalid_query", f"the query is malformed: {lines}", problems)
    assert limit is not None and offset is not None
    records = await request.app[SERVICES].queue.list(status=TaskStatus(status) if status else None,
                                                     flow=query.get("flow") or None, limit=limit, offset=offset,
                                                     owner_id=identity(request).owner_filter)
    body = {"tasks": [views.task_view(task) for task in records], "limit": limit, "offset": offset}
    return web.json_response(body, dumps=jsonio.dumps)


async def get_task(request: web.Request) -> web.Response:
    task = await owned_task(request, parsing.task_id(request))
    return web.json_response(views.task_view(task), dumps=jsonio.dumps)


async def cancel_task(request: web.Request) -> web.Response:
    task_id = parsing.task_id(request)
    await owned_task(request, task_id)
    task = await request.app[SERVICES].queue.cancel(task_id)
    return web.json_response(views.task_view(task), dumps=jsonio.dumps)


async def restart_task(request: web.Request) -> web.Response:
    """Files of the earlier run are removed first, so the next run's outputs are the only ones listed."""
    services = request.app[SERVICES]
    task_id = parsing.task_id(request)
    if (await owned_task(request, task_id)).status in RESTARTABLE:
        await asyncio.to_thread(_clear_outputs, services.storage, task_id)
    task = await services.queue.restart(task_id)
    return web.json_response(views.task_view(task), dumps=jsonio.dumps)


def _clear_outputs(storage: TaskStorage, task_id: int) -> None:
    shutil.rmtree(storage.output_dir(task_id), ignore_errors=True)


async def delete_task(request: web.Request) -> web.Response:
    """Rows first (``Conflict`` while the task runs), then its files."""
    services = request.app[SERVICES]
    task_id = parsing.task_id(request)
    await owned_task(request, task_id)
    await services.queue.delete(task_id)
    try:
        await asyncio.to_thread(services.storage.delete_task, task_id)
    except OSError:
        log.exception("task %s: the rows are deleted but its files could not be removed", task_id)
    return web.Response(status=204)
