"""Creating tasks: check the uploads and parameters, validate the bound graph, then insert rows and place files.

All or nothing: when any step fails, no task row and no file is left behind. The staged inputs are moved into
each task's input folder inside the creating transaction (``before_commit``), so a worker never claims a task
whose inputs are not in place yet.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from visionatrix.errors import InvalidInput, InvalidParams
from visionatrix.executor.validation import validate
from visionatrix.flows.flow import Flow
from visionatrix.flows.params import bind_params
from visionatrix.nodes.context import NodeContext, use
from visionatrix.queue.models import FileRecord
from visionatrix.server.services import Services
from visionatrix.server.task_request import Staging, TaskCreateRequest, Upload

INLINE_NODES = 200
"""A flow with more nodes is bound and validated in a thread (up to ``VIX_MAX_GRAPH_NODES`` take ~0.1 s)."""


async def create_tasks(services: Services, request: TaskCreateRequest, staging: Staging, *,
                       owner_id: int | None = None) -> list[int]:
    """Ids of the ``request.count`` new pending tasks of ``owner_id`` (a ``users.id``; None with sign-in off);
    raises the first layer's error and leaves nothing behind."""
    flow = services.flows.get(request.flow)
    if request.uploads:
        folder = staging.folder()
        graph = await asyncio.to_thread(_prepare, services, flow, request, folder)
    elif len(flow.graph) > INLINE_NODES:  # a big graph's binding and validation would hold the event loop
        folder = services.storage.root / "staging" / "none"
        graph = await asyncio.to_thread(_prepare, services, flow, request, folder)
    else:  # nothing to read from disk: binding and validating a small graph take a fraction of a millisecond
        folder = services.storage.root / "staging" / "none"
        graph = _prepare(services, flow, request, folder)
    inputs = [FileRecord(kind="input", name=u.name, node_id=None, size_bytes=u.size_bytes, sha256=u.sha256,
                         param=u.param) for u in request.uploads.values()]
    names = [u.name for u in request.uploads.values()]
    adopted: list[int] = []

    async def place_inputs(task_ids: list[int]) -> None:
        for task_id in task_ids:
            adopted.append(task_id)
            await asyncio.to_thread(services.storage.adopt, folder, task_id, names)

    try:
        return await services.queue.create(flow.name, graph, request.params, count=request.count,
                                           priority=request.priority, files=inputs,
                                           before_commit=place_inputs if names else None,
                                           columns={"owner_id": owner_id, "webhook": request.webhook})
    except BaseException:
        for task_id in adopted:
            with contextlib.suppress(OSError):
                services.storage.delete_task(task_id)
        raise


def _prepare(services: Services, flow: Flow, request: TaskCreateRequest, folder: Path) -> dict[str, Any]:
    """The bound graph, after checking every upload is an image and the graph validates (runs in a thread)."""
    problems = _image_problems(services, request.uploads, folder)
    try:
        graph = bind_params(flow, request.params, {name: upload.name for name, upload in request.uploads.items()})
    except InvalidParams as exc:
        raise InvalidParams({**problems, **exc.problems}) from None
    if problems:
        raise InvalidParams(problems)
    with use(NodeContext(input_dir=folder, max_image_pixels=services.max_image_pixels, check_model_files=False)):
        validate(graph, services.registry).raise_for_errors()
    return graph


def _image_problems(services: Services, uploads: dict[str, Upload], folder: Path) -> dict[str, str]:
    problems: dict[str, str] = {}
    for name, upload in uploads.items():
        try:
            services.storage.check_image(folder / upload.name, services.max_image_pixels)
        except InvalidInput as exc:
            problems[name] = exc.message
    return problems
