"""ComfyUI's views of a prompt a worker claimed but has not started: ``/queue`` lists it in ``queue_pending``, ahead
of the pending ones (``queue_running`` is what executes); ``/api/jobs`` calls it ``pending``; ``/interrupt`` leaves
it alone; its cancel is immediate."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from tests.unit.server.comfy.test_comfy_prompts import _post, solid_prompt
from visionatrix.queue.models import TaskStatus
from visionatrix.server.services import Services


async def _three_states(http: TestClient, services: Services) -> tuple[str, str, str]:
    """A pending prompt (queued first; of other node types, which the claims here do not ask for), a running one
    and a claimed one."""
    other_nodes = {"1": solid_prompt()["1"], "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    waiting = (await _post(http, {"prompt": other_nodes}))[1]["prompt_id"]
    running = (await _post(http, {"prompt": solid_prompt(8)}))[1]["prompt_id"]
    claimed = (await _post(http, {"prompt": solid_prompt(9)}))[1]["prompt_id"]
    prompts = services.prompts
    assert prompts is not None
    flow = (await prompts.get(running)).task.flow  # type: ignore[union-attr]
    run = await services.queue.claim_next("w", [flow])
    ahead = await services.queue.claim_next("w", [flow])
    assert run is not None and ahead is not None
    await services.queue.mark_started(run.id, run.lease_token)
    return waiting, running, claimed


async def test_queue_shows_a_claimed_prompt_pending_ahead_of_the_waiting_ones(http: TestClient,
                                                                                 services: Services) -> None:
    waiting, running, claimed = await _three_states(http, services)

    queue = await (await http.get("/queue")).json()

    assert [item[1] for item in queue["queue_running"]] == [running]
    assert [item[1] for item in queue["queue_pending"]] == [claimed, waiting]
    assert queue["queue_pending_total"] == 2
    first = await (await http.get("/queue?limit=1")).json()
    second = await (await http.get("/queue?limit=1&offset=1")).json()
    assert [item[1] for item in first["queue_pending"] + second["queue_pending"]] == [claimed, waiting]
    assert (await (await http.get("/api/prompt")).json()) == {"exec_info": {"queue_remaining": 3}}


async def test_jobs_call_a_claimed_prompt_pending_and_interrupt_leaves_it_alone(http: TestClient,
                                                                                  services: Services) -> None:
    waiting, running, claimed = await _three_states(http, services)

    jobs = {job["id"]: job for job in (await (await http.get("/api/jobs")).json())["jobs"]}
    assert {job_id: job["status"] for job_id, job in jobs.items()} == {
        waiting: "pending", running: "in_progress", claimed: "pending"}
    assert "execution_start_time" in jobs[running] and "execution_start_time" not in jobs[claimed]
    pending = (await (await http.get("/api/jobs?status=pending")).json())["jobs"]
    assert sorted(job["id"] for job in pending) == sorted([waiting, claimed])

    assert (await http.post("/interrupt", json={})).status == 200  # stops what executes, nothing else
    prompts = services.prompts
    assert prompts is not None
    states = {pid: (await prompts.get(pid)).task for pid in (running, claimed)}  # type: ignore[union-attr]
    assert states[running].cancel_requested and not states[claimed].cancel_requested

    assert (await (await http.post(f"/api/jobs/{claimed}/cancel")).json()) == {"cancelled": True}
    assert (await prompts.get(claimed)).task.status is TaskStatus.CANCELLED  # type: ignore[union-attr]
