"""Claims by id (a retried claim gets the task its lost reply carried; a withdrawn claim gives its task back) and
claims made ahead (a busy worker's claim leaves a new task to an idle one), against a real server and queue."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.unit.server.test_worker_api import FLOW, WORKER, _claim, _queued
from visionatrix.client import VixClient
from visionatrix.queue.models import AHEAD_GRACE_S
from visionatrix.server.services import Services


async def _withdraw(http: TestClient, worker_id: str, claim_id: str) -> dict[str, Any]:
    response = await http.post(f"{WORKER}/claim/withdraw", json={"worker_id": worker_id, "claim_id": claim_id})
    assert response.status == 200, await response.text()
    return await response.json()


async def test_a_retried_claim_gets_the_same_task_not_a_second_one(http: TestClient, vix: VixClient) -> None:
    first_id, second_id = await _queued(vix, count=2)
    task = await _claim(http, claim_id="c-1")
    again = await _claim(http, claim_id="c-1")  # the first reply was lost: the worker asks again
    assert task is not None and again is not None
    assert again["id"] == task["id"] == first_id and again["lease_token"] == task["lease_token"]
    assert (await vix.get_task(second_id))["status"] == "pending"
    other = await _claim(http, claim_id="c-2")
    assert other is not None and other["id"] == second_id


async def test_a_claim_id_is_the_workers_own(http: TestClient, vix: VixClient) -> None:
    first_id, second_id = await _queued(vix, count=2)
    mine = await _claim(http, worker_id="w1", claim_id="same")
    theirs = await _claim(http, worker_id="w2", claim_id="same")
    assert mine is not None and theirs is not None
    assert {mine["id"], theirs["id"]} == {first_id, second_id}


async def test_a_withdrawn_claim_releases_its_task_at_once(http: TestClient, vix: VixClient) -> None:
    [task_id] = await _queued(vix)
    task = await _claim(http, claim_id="c-1")
    assert task is not None and (await vix.get_task(task_id))["status"] == "claimed"
    assert await _withdraw(http, "w1", "c-1") == {"released_task_id": task_id}
    assert (await vix.get_task(task_id))["status"] == "pending"
    assert await _claim(http, claim_id="c-1") is None  # a late retry of the withdrawn claim gets nothing
    again = await _claim(http, worker_id="w2", claim_id="c-9")
    assert again is not None and again["id"] == task_id


async def test_withdrawing_an_unknown_or_empty_claim_releases_nothing(http: TestClient, vix: VixClient) -> None:
    assert await _withdraw(http, "w1", "never-sent") == {"released_task_id": None}
    [task_id] = await _queued(vix)
    assert await _claim(http, claim_id="never-sent") is None  # the withdrawal came first: that claim is over
    assert (await vix.get_task(task_id))["status"] == "pending"


async def test_withdrawing_a_waiting_claim_ends_its_wait_without_a_task(http: TestClient, vix: VixClient) -> None:
    waiting = asyncio.create_task(_claim(http, claim_id="c-1", wait_s=20))
    await asyncio.sleep(0.3)
    await _withdraw(http, "w1", "c-1")
    [task_id] = await _queued(vix)  # wakes the waiting claim, which must not take the task
    assert await asyncio.wait_for(waiting, 10) is None
    assert (await vix.get_task(task_id))["status"] == "pending"


async def test_a_new_task_goes_to_the_idle_worker_before_the_busy_one(http: TestClient, vix: VixClient) -> None:
    busy = asyncio.create_task(_claim(http, worker_id="busy", wait_s=20, ahead=True))
    await asyncio.sleep(0.2)
    idle = asyncio.create_task(_claim(http, worker_id="idle", wait_s=20))
    await asyncio.sleep(0.3)
    [task_id] = await _queued(vix)
    got = await asyncio.wait_for(idle, 10)
    assert got is not None and got["id"] == task_id
    await asyncio.sleep(AHEAD_GRACE_S + 0.2)
    assert not busy.done()  # it woke, waited its grace, found nothing, and waits on
    [second_id] = await _queued(vix)  # no idle worker now: the claim made ahead takes it after the grace
    ahead = await asyncio.wait_for(busy, 10)
    assert ahead is not None and ahead["id"] == second_id


async def test_a_claim_ahead_takes_a_task_that_is_already_queued_at_once(http: TestClient, vix: VixClient) -> None:
    [task_id] = await _queued(vix)
    task = await _claim(http, ahead=True)
    assert task is not None and task["id"] == task_id


@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        ("claim", {"worker_id": "w1", "installed_flows": [FLOW], "ahead": "yes"}, {"ahead"}),
        ("claim", {"worker_id": "w1", "installed_flows": [FLOW], "claim_id": 5}, {"claim_id"}),
        ("claim", {"worker_id": "w1", "installed_flows": [FLOW], "claim_id": "x" * 65}, {"claim_id"}),
        ("claim/withdraw", {"worker_id": "w1"}, {"claim_id"}),
        ("claim/withdraw", {"claim_id": "", "extra": 1}, {"worker_id", "claim_id", "extra"}),
    ],
)
async def test_bad_claim_fields_are_400_naming_each(http: TestClient, path: str, body: dict[str, Any],
                                                   fields: set[str]) -> None:
    response = await http.post(f"{WORKER}/{path}", json=body)
    assert response.status == 400
    reply = await response.json()
    assert reply["error"] == "invalid_request" and set(reply["details"]) == fields


async def test_a_withdrawal_while_the_claim_is_handed_over_still_releases_the_task(
        http: TestClient, vix: VixClient, services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    [task_id] = await _queued(vix)
    read_task = services.queue.get

    async def slow_read(task_id: int) -> Any:
        await asyncio.sleep(0.5)  # the claim is reading its task's files when the withdrawal comes
        return await read_task(task_id)

    monkeypatch.setattr(services.queue, "get", slow_read)
    claiming = asyncio.create_task(_claim(http, claim_id="c-1"))
    await asyncio.sleep(0.2)
    assert await _withdraw(http, "w1", "c-1") == {"released_task_id": None}
    assert await claiming is None
    monkeypatch.undo()
    assert (await vix.get_task(task_id))["status"] == "pending"
