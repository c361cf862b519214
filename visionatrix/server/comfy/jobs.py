"""ComfyUI's jobs API (``/api/jobs``): the editor's queue and history panels read it (``comfyui_api.md`` §1.4).

A job is a prompt's task. Registered at ``/api/jobs...`` and ``/comfy/api/jobs...`` only (ComfyUI defines these
routes with their ``/api`` prefix).
"""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web

from visionatrix.errors import Conflict, NotFound
from visionatrix.queue.models import TaskStatus
from visionatrix.queue.prompts import PromptRecord, PromptTasks
from visionatrix.server import parsing
from visionatrix.server.comfy import records
from visionatrix.server.comfy.prompts import canonical_uuid
from visionatrix.server.errors import BadRequest, UnsupportedMediaType
from visionatrix.server.identity import identity
from visionatrix.server.services import SERVICES

STATUSES = {"pending": (TaskStatus.PENDING, TaskStatus.CLAIMED), "in_progress": (TaskStatus.RUNNING,),
            "completed": (TaskStatus.FINISHED,), "failed": (TaskStatus.FAILED,), "cancelled": (TaskStatus.CANCELLED,)}
"""ComfyUI's job states and our statuses: a claimed task (held by a worker, not executing yet) is pending."""
NAMES = {status: name for name, statuses in STATUSES.items() for status in statuses}
UNFINISHED = (TaskStatus.PENDING, TaskStatus.CLAIMED, TaskStatus.RUNNING)
MAX_SCAN = 10_000
"""Sorting by duration or filtering by workflow looks at the newest this many jobs."""
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
"""``?limit=`` of ``GET /api/jobs`` (default ``DEFAULT_LIMIT``, at most ``MAX_LIMIT``): a page, never everything."""


def add_routes(router: web.UrlDispatcher, prefix: str) -> None:
    if prefix not in ("", "/comfy"):
        return
    router.add_get(f"{prefix}/api/jobs", list_jobs)
    router.add_post(f"{prefix}/api/jobs/cancel", cancel_jobs)
    router.add_get(f"{prefix}/api/jobs/{{job_id}}", get_job)
    router.add_post(f"{prefix}/api/jobs/{{job_id}}/cancel", cancel_job)


def _prompts(request: web.Request) -> PromptTasks:
    prompts = request.app[SERVICES].prompts
    assert prompts is not None
    return prompts


def _bad(message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=400)


def job_item(prompt: PromptRecord) -> dict[str, Any]:
    task = prompt.task
    outputs = records.node_outputs(task)
    refs = [(node, kind, ref) for node, kinds in outputs.items() for kind, refs in kinds.items() for ref in refs]
    previewable = [(node, kind, ref) for node, kind, ref in refs if kind in ("images", "gifs", "audio")]
    item: dict[str, Any] = {
        "id": prompt.prompt_id, "status": NAMES[task.status], "priority": prompt.extra.get("number", task.id),
        "create_time": records.ms(task.created_at), "execution_start_time": records.ms(task.started_at),
        "execution_end_time": records.ms(task.finished_at) if task.status not in UNFINISHED else None,
        "outputs_count": len(refs), "previewable_outputs_count": len(previewable),
        "workflow_id": _workflow_id(prompt),
    }
    if task.status is TaskStatus.FAILED:
        item["execution_error"] = records.error_payload(task, prompt.prompt_id)
    if previewable:
        node, kind, ref = previewable[0]
        item["preview_output"] = {**ref, "nodeId": node, "mediaType": kind}
    return {key: value for key, value in item.items() if value is not None}


def _workflow_id(prompt: PromptRecord) -> str | None:
    workflow = prompt.extra.get("extra_data", {}).get("extra_pnginfo", {}).get("workflow")
    return workflow.get("id") if isinstance(workflow, dict) and isinstance(workflow.get("id"), str) else None


async def list_jobs(request: web.Request) -> web.Response:
    query = request.query
    statuses = None
    if query.get("status"):
        names = [name.strip() for name in query["status"].split(",") if name.strip()]
        unknown = [name for name in names if name not in STATUSES]
        if unknown:
            return _bad(f"unknown status: {', '.join(unknown)}; expected some of {', '.join(STATUSES)}")
        statuses = [status for name in names for status in STATUSES[name]]
    sort_by = query.get("sort_by", "created_at")
    sort_order = query.get("sort_order", "desc")
    if sort_by not in ("created_at", "execution_duration") or sort_order not in ("asc", "desc"):
        return _bad("sort_by must be created_at or execution_duration, sort_order asc or desc")
    problems: dict[str, str] = {}
    limit = parsing.int_value("limit", query.get("limit", str(DEFAULT_LIMIT)), low=1, high=MAX_LIMIT,
                              problems=problems)
    offset = parsing.int_value("offset", query.get("offset", "0"), low=0, high=parsing.MAX_ROW_ID, problems=problems)
    if problems or limit is None or offset is None:
        return _bad("; ".join(f"{name}: {why}" for name, why in problems.items()))
    prompts, owner = _prompts(request), identity(request).owner_filter
    workflow_id = query.get("workflow_id")
    if sort_by == "created_at" and not workflow_id:  # the database pages: nothing past the page is read
        chosen = await prompts.list(statuses, limit=limit, offset=offset, newest_first=sort_order == "desc",
                                    owner_id=owner)
        total = await prompts.count(statuses, owner_id=owner)
    else:
        jobs = await prompts.list(statuses, limit=MAX_SCAN, newest_first=True, owner_id=owner)
        if workflow_id:
            jobs = [job for job in jobs if _workflow_id(job) == workflow_id]
        jobs.sort(key=_sort_key(sort_by), reverse=sort_order == "desc")
        total = len(jobs)
        chosen = jobs[offset:offset + limit]
    return web.json_response({"jobs": [job_item(job) for job in chosen],
                              "pagination": {"offset": offset, "limit": limit, "total": total,
                                             "has_more": offset + len(chosen) < total}})


def _sort_key(sort_by: str) -> Any:
    if sort_by == "created_at":
        return lambda job: (job.task.created_at, job.task.id)

    def duration(job: PromptRecord) -> float:
        task = job.task
        if task.started_at is None or task.finished_at is None:
            return -1.0
        return (task.finished_at - task.started_at).total_seconds()

    return duration


async def _visible(request: web.Request, job_id: str) -> PromptRecord | None:
    """The job, when the caller may see it (a user: their own); None otherwise."""
    prompt = await _prompts(request).get(job_id)
    return prompt if prompt is not None and identity(request).may_see(prompt.task.owner_id) else None


async def get_job(request: web.Request) -> web.Response:
    prompt = await _visible(request, request.match_info["job_id"])
    if prompt is None:
        return web.json_response({"error": "Job not found"}, status=404)
    detail = job_item(prompt)
    detail["workflow"] = {"prompt": prompt.task.graph, "extra_data": prompt.extra.get("extra_data", {})}
    if prompt.task.status not in UNFINISHED:
        entry = records.history_entry(prompt.task, prompt.prompt_id, prompt.extra)
        detail["outputs"] = entry["outputs"]
        detail["execution_status"] = entry["status"]
    return web.json_response(detail)


async def _cancel(request: web.Request, prompt: PromptRecord | None) -> bool:
    if prompt is None or prompt.task.status not in UNFINISHED:
        return False
    with contextlib.suppress(Conflict, NotFound):
        await request.app[SERVICES].queue.cancel(prompt.task.id)
        return True
    return False


async def cancel_job(request: web.Request) -> web.Response:
    prompt = await _visible(request, request.match_info["job_id"])
    return web.json_response({"cancelled": await _cancel(request, prompt)})


async def cancel_jobs(request: web.Request) -> web.Response:
    try:
        body = await parsing.read_json(request, scripts_ok=True)
    except BadRequest as exc:
        status = 415 if isinstance(exc, UnsupportedMediaType) else 400
        return web.json_response({"error": f'{exc.message}; expected {{"job_ids": [...]}}'}, status=status)
    ids = body.get("job_ids") if isinstance(body, dict) else None
    if not isinstance(ids, list):
        return _bad("job_ids must be a list of job ids")
    invalid = [i for i in ids if not canonical_uuid(i)]
    if invalid:
        return _bad("job ids must be canonical UUIDs", invalid_ids=invalid)
    cancelled = [await _cancel(request, await _visible(request, job_id)) for job_id in ids]
    return web.json_response({"cancelled": any(cancelled)})

