"""Per-user views end to end with sign-in on: users A (``alice``) and B (``bob``) each queue a task and a ComfyUI
prompt; each sees, lists, clears and hears about only their own (an admin: everyone's); neither can take the other's
ComfyUI socket over; a user's pending tasks are limited, an admin's are not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.unit.server.comfy.test_comfy_prompts import _run_all
from tests.unit.server.signin_world import World, bearer, cookie, make_world
from visionatrix.server.services import Services

ADMIN = "root_session"


@pytest.fixture
async def pending(services: Services, aiohttp_client: Any) -> World:
    """A's and B's task and prompt, all pending."""
    return await make_world(aiohttp_client, services, finished=())


@pytest.fixture
async def finished(services: Services, aiohttp_client: Any) -> World:
    """A's and B's task and prompt, all finished with an output."""
    return await make_world(aiohttp_client, services)


def _as(world: World, who: str) -> dict[str, str]:
    return cookie(world.secrets[ADMIN]) if who == "admin" else bearer(world.secrets[f"{who}_api"])


async def _get(world: World, who: str, path: str) -> Any:
    response = await world.client.get(path, headers=_as(world, who))
    assert response.status == 200, f"{who} {path}: {response.status} {await response.text()}"
    return await response.json()


def _own(world: World, *names: str) -> set[int]:
    return {task for name in names for task in (world.tasks[name], world.prompt_tasks[name])}


async def test_each_user_lists_only_their_own_tasks_and_an_admin_all(pending: World) -> None:
    for who, names in (("alice", ["alice"]), ("bob", ["bob"]), ("admin", ["alice", "bob"])):
        listed = {task["id"] for task in (await _get(pending, who, "/vapi/tasks"))["tasks"]}
        assert listed == _own(pending, *names), who


async def test_the_comfy_queue_and_queue_remaining_are_per_user(pending: World) -> None:
    for who, names in (("alice", ["alice"]), ("bob", ["bob"]), ("admin", ["alice", "bob"])):
        queue = await _get(pending, who, "/queue")
        assert {item[1] for item in queue["queue_pending"]} == {pending.prompts[n] for n in names}, who
        assert queue["queue_pending_total"] == len(names)
        assert (await _get(pending, who, "/prompt"))["exec_info"]["queue_remaining"] == len(names), who


async def test_history_and_jobs_are_per_user(finished: World) -> None:
    for who, names in (("alice", ["alice"]), ("bob", ["bob"]), ("admin", ["alice", "bob"])):
        wanted = {finished.prompts[n] for n in names}
        assert set(await _get(finished, who, "/history")) == wanted, who
        jobs = await _get(finished, who, "/api/jobs")
        assert {job["id"] for job in jobs["jobs"]} == wanted, who
    other = finished.prompts["alice"]
    assert await _get(finished, "bob", f"/history/{other}") == {}
    assert set(await _get(finished, "alice", f"/history/{other}")) == {other}


async def test_clearing_or_deleting_from_the_queue_leaves_another_users_prompts(pending: World) -> None:
    alices = pending.prompts["alice"]
    for body in ({"clear": True}, {"delete": [alices]}):
        response = await pending.client.post("/queue", json=body, headers=_as(pending, "bob"))
        assert response.status == 200
    assert [item[1] for item in (await _get(pending, "alice", "/queue"))["queue_pending"]] == [alices]
    assert (await _get(pending, "bob", "/queue"))["queue_pending"] == []  # bob's own went
    response = await pending.client.post("/queue", json={"delete": [alices]}, headers=_as(pending, "admin"))
    assert response.status == 200
    assert (await _get(pending, "alice", "/queue"))["queue_pending"] == []  # an admin may


async def test_another_users_job_cannot_be_cancelled_or_interrupted(pending: World) -> None:
    services, alices = pending.services, pending.prompts["alice"]
    for path, body in ((f"/api/jobs/{alices}/cancel", None), ("/api/jobs/cancel", {"job_ids": [alices]})):
        response = await pending.client.post(path, json=body, headers=_as(pending, "bob"))
        assert (response.status, await response.json()) == (200, {"cancelled": False}), path
    task = await services.queue.get(pending.prompt_tasks["alice"])
    assert task.status == "pending"
    claimed = await services.queue.claim_next("w", [task.flow])
    assert claimed is not None and claimed.id == task.id
    await services.queue.mark_started(task.id, claimed.lease_token)  # running: /interrupt stops what executes
    for body in ({}, {"prompt_id": alices}, {"client_id": "alice-client"}):
        response = await pending.client.post("/interrupt", json=body, headers=_as(pending, "bob"))
        assert response.status == 200
    assert not (await services.queue.get(task.id)).cancel_requested
    response = await pending.client.post("/interrupt", json={}, headers=_as(pending, "alice"))
    assert response.status == 200
    assert (await services.queue.get(task.id)).cancel_requested


async def _next_event(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
    return await ws.receive_json(timeout=5)


async def test_the_event_socket_carries_only_the_callers_task_events(pending: World) -> None:
    client, tasks = pending.client, pending.tasks
    async with client.ws_connect("/vapi/events", headers=_as(pending, "alice")) as alice, \
            client.ws_connect("/vapi/events", headers=_as(pending, "bob")) as bob, \
            client.ws_connect(f"/vapi/events?task_id={tasks['alice']}", headers=_as(pending, "bob")) as peeking, \
            client.ws_connect("/vapi/events", headers=_as(pending, "admin")) as admin:
        for ws in (alice, bob, peeking, admin):
            assert (await _next_event(ws))["type"] == "subscribed"
        for who in ("alice", "bob"):
            response = await client.post(f"/vapi/tasks/{tasks[who]}/cancel", headers=_as(pending, who))
            assert response.status == 200
        seen_by_alice = await _next_event(alice)
        assert (seen_by_alice["type"], seen_by_alice["task_id"]) == ("task_cancelled", tasks["alice"])
        seen_by_bob = await _next_event(bob)
        assert (seen_by_bob["type"], seen_by_bob["task_id"]) == ("task_cancelled", tasks["bob"])  # alice's was first
        seen = [await _next_event(admin), await _next_event(admin)]
        assert [e["task_id"] for e in seen] == [tasks["alice"], tasks["bob"]]
        for ws in (peeking, alice):
            with pytest.raises(TimeoutError):
                await ws.receive_json(timeout=0.5)


async def test_alice_hears_her_own_task_event(pending: World) -> None:
    client, task = pending.client, pending.tasks["alice"]
    async with client.ws_connect(f"/vapi/events?task_id={task}", headers=_as(pending, "alice")) as alice:
        assert (await _next_event(alice))["type"] == "subscribed"
        assert (await client.post(f"/vapi/tasks/{task}/cancel", headers=_as(pending, "alice"))).status == 200
        event = await _next_event(alice)
        assert (event["type"], event["task_id"]) == ("task_cancelled", task)


async def _sid(ws: aiohttp.ClientWebSocketResponse) -> str:
    """The sid the server gave this socket (a status broadcast may come before the greeting that names it)."""
    while True:
        message = await ws.receive_json(timeout=5)
        if message["type"] == "status" and "sid" in message["data"]:
            return message["data"]["sid"]


async def _comfy_messages(ws: aiohttp.ClientWebSocketResponse, quiet_s: float = 1.0) -> list[dict[str, Any]]:
    """Every message until none came for ``quiet_s``."""
    seen = []
    while True:
        try:
            seen.append(await ws.receive_json(timeout=quiet_s))
        except TimeoutError:
            return seen


async def test_comfy_sockets_are_per_user_and_a_client_id_cannot_be_taken_over(
        finished: World, tmp_path: Path) -> None:
    client, world = finished.client, finished
    async with client.ws_connect("/ws?clientId=alice-ws", headers=_as(world, "alice")) as alice, \
            client.ws_connect("/ws?clientId=alice-ws", headers=_as(world, "bob")) as bob, \
            client.ws_connect("/ws?clientId=bob-ws", headers=_as(world, "bob")) as bobs_own:
        assert await _sid(alice) == "alice-ws"
        assert await _sid(bob) != "alice-ws"  # not taken over
        assert await _sid(bobs_own) == "bob-ws"
        ids = {}
        for who in ("alice", "bob"):
            response = await world.create_prompt(_as(world, who), client_id=f"{who}-ws")
            assert response.status == 200
            ids[who] = (await response.json())["prompt_id"]
        assert await _run_all(world.services, tmp_path) == 2
        alices, bobs, squatter = (await _comfy_messages(alice), await _comfy_messages(bobs_own),
                                  await _comfy_messages(bob))
    assert {m["data"].get("prompt_id") for m in alices} - {None} == {ids["alice"]}
    assert "execution_success" in [m["type"] for m in alices]
    assert {m["data"].get("prompt_id") for m in bobs} - {None} == {ids["bob"]}
    assert ids["alice"] not in str(squatter) and ids["alice"] not in str(bobs)


async def test_a_squatted_client_id_gets_nothing_of_the_owners_prompt(finished: World, tmp_path: Path) -> None:
    """B connects first under the client id A's prompt will name: A's run is not sent to B's socket."""
    client, world = finished.client, finished
    async with client.ws_connect("/ws?clientId=alice-ws", headers=_as(world, "bob")) as squatter:
        assert await _sid(squatter) == "alice-ws"
        response = await world.create_prompt(_as(world, "alice"), client_id="alice-ws")
        prompt_id = (await response.json())["prompt_id"]
        assert await _run_all(world.services, tmp_path) == 1
        seen = await _comfy_messages(squatter)
    assert prompt_id not in str(seen)
    history = await _get(world, "alice", f"/history/{prompt_id}")
    assert history[prompt_id]["status"]["completed"] is True  # it ran; B just heard nothing of it


async def test_a_users_pending_tasks_are_limited_and_an_admins_are_not(services: Services,
                                                                      aiohttp_client: Any) -> None:
    world = await make_world(aiohttp_client, services, max_pending_per_user=2, finished=())
    for response in (await world.create_task(_as(world, "alice")), await world.create_prompt(_as(world, "alice"))):
        assert response.status == 429
        body = await response.json()
        assert "too_many_pending" in str(body)
    assert len((await _get(world, "alice", "/vapi/tasks"))["tasks"]) == 2  # nothing queued past the limit
    for _ in range(3):
        assert (await world.create_task(_as(world, "admin"))).status == 201
    response = await world.client.post(f"/vapi/tasks/{world.tasks['alice']}/cancel", headers=_as(world, "alice"))
    assert response.status == 200
    assert (await world.create_task(_as(world, "alice"))).status == 201  # room again
