"""The answers' schemas are generated from pydantic models (``response_models``): real views of tasks in every state
validate against them, keys and types both, so the OpenAPI document cannot drift from what the routes send."""

from __future__ import annotations

import json
import typing

import pytest
from aiohttp.test_utils import TestClient
from pydantic import ValidationError

from tests.unit.server.helpers import SAMPLE, finish_with_output
from visionatrix.client import VixClient
from visionatrix.queue.models import TaskStatus
from visionatrix.server import response_models, views
from visionatrix.server.openapi import document
from visionatrix.server.openapi_parts import model_schemas
from visionatrix.server.services import Services

FLOW = "web_resize_sharpen"


async def _tasks_in_every_state(vix: VixClient, services: Services) -> list[int]:
    """A pending task with a webhook, a claimed one, a running one, a finished one with an input and an output, one
    failed at a node (with its GPU peak) and a cancelled one."""
    finished, failed, running, claimed_id, cancelled = await vix.create_task(FLOW, files={"image": SAMPLE}, count=5)
    [pending] = await vix.create_task(FLOW, files={"image": SAMPLE}, webhook_url="https://example.com/hook",
                                      webhook_headers={"X-Key": "secret"})
    await finish_with_output(services, finished)
    tokens = {}
    for task_id in (failed, running, claimed_id):
        claimed = await services.queue.claim_next("w1", [FLOW])
        assert claimed is not None and claimed.id == task_id
        tokens[task_id] = claimed.lease_token
    await services.queue.mark_started(running, tokens[running])
    await services.queue.report_progress(running, tokens[running], progress=40, current_node="6")
    await services.queue.mark_failed(failed, tokens[failed], node_id="6", class_type="ImageSharpen", message="boom",
                                     traceback="Traceback ...", peak_vram_bytes=2**40)
    await vix.cancel_task(cancelled)
    states = {task_id: (await services.queue.get(task_id)).status for task_id in
              (pending, claimed_id, running, finished, failed, cancelled)}
    assert sorted(states.values()) == sorted(TaskStatus)
    return list(states)


async def test_real_task_views_in_every_state_are_the_task_model(http: TestClient, vix: VixClient,
                                                                 services: Services) -> None:
    task_ids = await _tasks_in_every_state(vix, services)
    shown_views = [views.task_view(await services.queue.get(task_id)) for task_id in task_ids]
    assert all(any(view[key] for view in shown_views) for key in ("error", "outputs", "webhook_url",
                                                                   "peak_vram_bytes", "current_node", "timings"))
    for task_id, view in zip(task_ids, shown_views, strict=True):
        response_models.Task.model_validate(view)
        answer = await http.get(f"/vapi/tasks/{task_id}")
        assert answer.status == 200
        shown = response_models.Task.model_validate_json(await answer.read())
        assert shown.status == view["status"] and shown.error == (view["error"] and response_models.TaskError(
            **view["error"]))
    listed = await (await http.get("/vapi/tasks")).json()
    assert sorted(task["id"] for task in listed["tasks"]) == sorted(task_ids)
    for task in listed["tasks"]:
        response_models.Task.model_validate_json(json.dumps(task))


async def test_a_view_that_drifts_from_the_model_is_refused(vix: VixClient, services: Services) -> None:
    [task_id] = await vix.create_task(FLOW, files={"image": SAMPLE})
    view = views.task_view(await services.queue.get(task_id))
    response_models.Task.model_validate(view)
    for drifted in ({**view, "position": 1}, {k: v for k, v in view.items() if k != "webhook_url"},
                    {**view, "attempt": "0"}, {**view, "status": "queued"},
                    {**view, "inputs": [{**view["inputs"][0], "path": "/tmp/x"}]}):
        with pytest.raises(ValidationError):
            response_models.Task.model_validate(drifted)


def test_the_task_statuses_the_model_states_are_the_queues() -> None:
    status = response_models.Task.model_fields["status"].annotation
    assert set(typing.get_args(status)) == {status.value for status in TaskStatus}


def test_the_documents_task_schemas_are_generated_from_the_models() -> None:
    components = document("1")["components"]["schemas"]
    generated = model_schemas(*response_models.RESPONSES)
    for name in ("Task", "TaskFile", "TaskError"):
        assert components[name] == generated[name], name
    assert set(components["Task"]["properties"]) == set(response_models.Task.model_fields)
