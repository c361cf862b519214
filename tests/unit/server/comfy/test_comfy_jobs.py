"""ComfyUI's jobs API over our prompt tasks: list with status filters, sorting and pagination, detail, cancel."""

from __future__ import annotations

import uuid
from pathlib import Path

from aiohttp.test_utils import TestClient

from tests.unit.server.comfy.test_comfy_prompts import _post, _run_all, solid_prompt
from visionatrix.server.services import Services


async def test_jobs_list_filter_page_and_detail(http: TestClient, services: Services, tmp_path: Path) -> None:
    done = (await _post(http, {"prompt": solid_prompt(8)}))[1]["prompt_id"]
    await _run_all(services, tmp_path)
    waiting = [(await _post(http, {"prompt": solid_prompt(9 + i)}))[1]["prompt_id"] for i in range(3)]
    page = await (await http.get("/api/jobs?status=in_progress,pending&limit=2&offset=0")).json()
    assert [job["id"] for job in page["jobs"]] == [waiting[2], waiting[1]]  # newest first
    assert page["pagination"] == {"offset": 0, "limit": 2, "total": 3, "has_more": True}
    assert all(job["status"] == "pending" for job in page["jobs"])
    history = await (await http.get("/comfy/api/jobs?status=completed,failed,cancelled&limit=10")).json()
    [job] = history["jobs"]
    assert job["id"] == done and job["status"] == "completed" and job["outputs_count"] == 1
    assert job["preview_output"]["mediaType"] == "images" and job["preview_output"]["nodeId"] == "2"
    detail = await (await http.get(f"/api/jobs/{done}")).json()
    assert detail["workflow"]["prompt"]["2"]["class_type"] == "SaveImage"
    assert detail["execution_status"]["status_str"] == "success" and "2" in detail["outputs"]
    ascending = await (await http.get("/api/jobs?sort_order=asc&limit=50")).json()
    assert [job["id"] for job in ascending["jobs"]] == [done, *waiting]


async def test_jobs_cancel_one_and_many(http: TestClient) -> None:
    ids = [(await _post(http, {"prompt": solid_prompt(8 + i)}))[1]["prompt_id"] for i in range(3)]
    assert await (await http.post(f"/api/jobs/{ids[0]}/cancel")).json() == {"cancelled": True}
    assert await (await http.post(f"/api/jobs/{ids[0]}/cancel")).json() == {"cancelled": False}
    reply = await (await http.post("/api/jobs/cancel", json={"job_ids": ids[1:]})).json()
    assert reply == {"cancelled": True}
    statuses = {job["status"] for job in (await (await http.get("/api/jobs")).json())["jobs"]}
    assert statuses == {"cancelled"}


async def test_bad_jobs_requests_are_400_or_404(http: TestClient) -> None:
    for query in ("status=done", "sort_by=name", "sort_order=up", "limit=0", "offset=-1", "limit=x"):
        response = await http.get(f"/api/jobs?{query}")
        assert response.status == 400 and "error" in await response.json(), query
    response = await http.get(f"/api/jobs/{uuid.uuid4()}")
    assert response.status == 404 and await response.json() == {"error": "Job not found"}
    response = await http.post("/api/jobs/cancel", json={"job_ids": ["nope"]})
    assert response.status == 400 and (await response.json())["invalid_ids"] == ["nope"]
    assert (await http.post("/api/jobs/cancel", json={"job_ids": "x"})).status == 400
    assert (await http.post("/api/jobs/cancel", data=b"{")).status == 400
