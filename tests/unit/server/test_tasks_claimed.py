"""``/vapi/tasks`` shows a task a worker holds but has not started as ``claimed`` (no ``started_at``), filters by it,
cancels it at once and refuses to delete it; ``running`` starts with the worker's start report."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from tests.unit.server.helpers import SAMPLE
from visionatrix.client import VixClient, VixClientError
from visionatrix.server.services import Services

FLOW = "web_resize_sharpen"


async def test_a_claimed_task_is_shown_claimed_until_its_start_then_running(http: TestClient, vix: VixClient,
                                                                             services: Services) -> None:
    run_id, ahead_id, waiting_id = await vix.create_task(FLOW, files={"image": SAMPLE}, count=3)
    run = await services.queue.claim_next("w1", [FLOW])
    ahead = await services.queue.claim_next("w1", [FLOW])
    assert run is not None and ahead is not None

    shown = await vix.get_task(run_id)
    assert (shown["status"], shown["worker_id"], shown["started_at"]) == ("claimed", "w1", None)
    await services.queue.mark_started(run_id, run.lease_token)
    shown = await vix.get_task(run_id)
    assert shown["status"] == "running" and shown["started_at"] is not None

    assert [t["id"] for t in await vix.list_tasks(status="claimed")] == [ahead_id]
    assert [t["id"] for t in await vix.list_tasks(status="running")] == [run_id]
    assert [t["id"] for t in await vix.list_tasks(status="pending")] == [waiting_id]
    assert [t["status"] for t in await vix.list_tasks()] == ["pending", "claimed", "running"]
    answer = await http.get("/vapi/tasks?status=queued_on_worker")
    assert answer.status == 400 and "claimed" in (await answer.json())["details"]["status"]


async def test_a_claimed_task_is_cancelled_at_once_but_not_deleted_while_claimed(vix: VixClient,
                                                                                  services: Services) -> None:
    [task_id] = await vix.create_task(FLOW, files={"image": SAMPLE})
    claimed = await services.queue.claim_next("w1", [FLOW])
    assert claimed is not None
    with pytest.raises(VixClientError) as refused:
        await vix.delete_task(task_id)
    assert refused.value.status == 409 and "claimed" in refused.value.message

    cancelled = await vix.cancel_task(task_id)

    assert (cancelled["status"], cancelled["started_at"]) == ("cancelled", None)
    assert cancelled["finished_at"] is not None
    await vix.delete_task(task_id)
