"""``/queue`` and ``/api/jobs`` answer a page, never everything: a deep queue (an API client queueing a night's work)
must not turn each editor refresh into megabytes."""

from __future__ import annotations

import uuid

from aiohttp.test_utils import TestClient

from tests.unit.server.comfy.test_comfy_prompts import solid_prompt
from visionatrix.queue.prompts import Prompt
from visionatrix.server.comfy.jobs import DEFAULT_LIMIT, MAX_LIMIT
from visionatrix.server.comfy.queue_history import QUEUE_PAGE
from visionatrix.server.services import Services

DEPTH = DEFAULT_LIMIT + 20


async def _queue_many(services: Services, count: int) -> list[str]:
    prompts = services.prompts
    assert prompts is not None
    ids = []
    for _ in range(count):
        prompt_id = str(uuid.uuid4())
        graph = solid_prompt()
        await prompts.create(Prompt(prompt_id=prompt_id, graph=graph, node_types=frozenset({"EmptyImage", "SaveImage"}),
                                    client_id=None, extra={"extra_data": {}, "outputs": ["2"]}))
        ids.append(prompt_id)
    return ids


async def test_jobs_default_to_one_page_and_refuse_huge_limits(http: TestClient, services: Services) -> None:
    ids = await _queue_many(services, DEPTH)
    page = await (await http.get("/api/jobs")).json()
    assert len(page["jobs"]) == DEFAULT_LIMIT and [job["id"] for job in page["jobs"]][:2] == ids[::-1][:2]
    assert page["pagination"] == {"offset": 0, "limit": DEFAULT_LIMIT, "total": DEPTH, "has_more": True}
    rest = await (await http.get(f"/api/jobs?offset={DEFAULT_LIMIT}")).json()
    assert [job["id"] for job in rest["jobs"]] == ids[::-1][DEFAULT_LIMIT:]
    assert rest["pagination"]["has_more"] is False
    assert (await http.get(f"/api/jobs?limit={MAX_LIMIT + 1}")).status == 400


async def test_the_queue_is_paged_and_counts_the_whole_backlog(http: TestClient, services: Services) -> None:
    ids = await _queue_many(services, 30)
    whole = await (await http.get("/queue")).json()
    assert whole["queue_pending_total"] == 30 and len(whole["queue_pending"]) == 30
    page = await (await http.get("/queue?limit=10&offset=25")).json()
    assert [item[1] for item in page["queue_pending"]] == ids[25:]
    assert page["queue_pending_total"] == 30 and page["queue_running"] == []
    assert (await http.get(f"/queue?limit={QUEUE_PAGE + 1}")).status == 400
    assert (await http.get("/queue?offset=-1")).status == 400
