"""Task webhooks end to end: a real server (in-process worker, SQLite) POSTs signed JSON to a real receiver on
127.0.0.1 when a task finishes, fails or is cancelled; retries, gives up, refuses non-public targets and never
follows a redirect; the task's JSON shows the URL but never the headers; bad fields are a 400 with nothing made."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.unit.server.helpers import SAMPLE, staging_leftovers
from visionatrix.client import VixClient
from visionatrix.executor.run import Executor, ExecutorSettings
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.models import WorkerRecord
from visionatrix.security_config import SecuritySettings
from visionatrix.server.app import create_app
from visionatrix.server.services import Services
from visionatrix.server.webhooks import WEBHOOKS
from visionatrix.server.webhooks.delivery import Deliverer, Outcome
from visionatrix.worker.daemon import Worker, WorkerOptions
from visionatrix.worker.db_source import DatabaseSource

SECRET = "test-webhook-secret"
FLOW = "web_resize_sharpen"


async def _run_all(services: Services, tmp_path: Path) -> int:
    """Run every task of ``FLOW`` on a real in-process worker (DEFAULT mode's, in burst)."""
    executor = Executor(services.registry, ExecutorSettings(device="cpu", temp_dir=tmp_path / "executor"))
    try:
        source = DatabaseSource(services.queue, services.storage, mode="DEFAULT")
        options = WorkerOptions(worker_id="w", installed_flows=[FLOW], claim_wait_s=0, retry_s=0.01)
        return await Worker(source, executor, options).run(asyncio.Event(), burst=True)
    finally:
        executor.close()


class Receiver:
    """A webhook receiver: records each request; answers with the next of ``answers`` (default 200)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.answers: list[int | tuple[int, str]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, tuple):
            return web.Response(status=answer[0], headers={"Location": answer[1]})
        return web.Response(status=answer)


async def _receiver(aiohttp_server: Any) -> Receiver:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    served: TestServer = await aiohttp_server(app, host="127.0.0.1")
    receiver.url = str(served.make_url("/hook"))
    return receiver


@pytest.fixture
async def receiver(aiohttp_server: Any) -> Receiver:
    return await _receiver(aiohttp_server)


@pytest.fixture
async def server(aiohttp_server: Any, services: Services) -> AsyncIterator[TestServer]:
    services.security = SecuritySettings(webhook_allow_hosts=("127.0.0.1",), webhook_secret=SECRET)
    served: TestServer = await aiohttp_server(create_app(services))
    deliverer = served.app[WEBHOOKS].deliverer
    assert deliverer is not None
    deliverer.backoff_s = 0.01
    yield served
    await served.close()


def _deliverer(server: TestServer) -> Deliverer:
    deliverer = server.app[WEBHOOKS].deliverer
    assert deliverer is not None
    return deliverer


async def _outcome(server: TestServer, task_id: int, timeout_s: float = 10.0) -> Outcome:
    deliverer = _deliverer(server)
    async with asyncio.timeout(timeout_s):
        while True:
            found = [o for o in deliverer.outcomes if o.task_id == task_id]
            if found:
                await deliverer.drain()
                return found[-1]
            await asyncio.sleep(0.02)


def _verified(headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The body as JSON, after checking its signature the way a receiver does."""
    timestamp = headers["X-Visionatrix-Timestamp"]
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["X-Visionatrix-Signature"], f"sha256={expected}")
    assert abs(int(timestamp) - datetime.now(UTC).timestamp()) < 60
    assert headers["Content-Type"] == "application/json"
    return json.loads(body)


async def test_a_task_run_by_the_in_process_worker_posts_a_signed_finished_webhook(
        vix: VixClient, server: TestServer, services: Services, receiver: Receiver, tmp_path: Path) -> None:
    [task_id] = await vix.create_task(FLOW, files={"image": SAMPLE}, webhook_url=receiver.url,
                                      webhook_headers={"Authorization": "Bearer hook-token-123"})
    assert await _run_all(services, tmp_path) == 1
    outcome = await _outcome(server, task_id)
    assert outcome.delivered and outcome.attempts == 1
    [(headers, body)] = receiver.requests
    assert headers["Authorization"] == "Bearer hook-token-123"
    sent = _verified(headers, body)
    assert (sent["event"], sent["task_id"], sent["flow"], sent["status"], sent["error"]) == (
        "task_finished", task_id, FLOW, "finished", None)
    assert headers["X-Visionatrix-Delivery"] == sent["delivery_id"]
    assert sent["finished_at"] and sent["outputs"]
    task = await vix.get_task(task_id)
    assert [o["url"] for o in sent["outputs"]] == [o["url"] for o in task["outputs"]]
    assert task["webhook_url"] == receiver.url
    shown = json.dumps([task, await vix.list_tasks()])
    assert "hook-token-123" not in shown and "Authorization" not in shown and "webhook_headers" not in shown


async def test_a_failed_task_posts_its_error(vix: VixClient, server: TestServer, services: Services,
                                             receiver: Receiver) -> None:
    [task_id] = await vix.create_task(FLOW, files={"image": SAMPLE}, webhook_url=receiver.url)  # multipart
    claimed = await services.queue.claim_next("w", [FLOW])
    assert claimed is not None
    await services.queue.mark_failed(task_id, claimed.lease_token, node_id="6", class_type="ImageSharpen",
                                     message="out of memory", traceback="secret traceback")
    assert (await _outcome(server, task_id)).delivered
    [(headers, body)] = receiver.requests
    sent = _verified(headers, body)
    assert (sent["event"], sent["status"]) == ("task_failed", "failed")
    assert sent["error"] == {"node_id": "6", "class_type": "ImageSharpen", "message": "out of memory"}


async def test_a_cancelled_task_posts_once_and_a_restarted_one_posts_again(
        vix: VixClient, server: TestServer, receiver: Receiver) -> None:
    [task_id] = await vix.create_task(FLOW, files={"image": SAMPLE}, webhook_url=receiver.url)
    await vix.cancel_task(task_id)
    assert (await _outcome(server, task_id)).delivered
    first = _verified(*receiver.requests[0])
    assert (first["event"], first["status"]) == ("task_cancelled", "cancelled")
    await vix.restart_task(task_id)
    await vix.cancel_task(task_id)
    async with asyncio.timeout(10):
        while len(receiver.requests) < 2:
            await asyncio.sleep(0.02)
    await _deliverer(server).drain()
    second = _verified(*receiver.requests[1])
    assert len(receiver.requests) == 2 and second["delivery_id"] != first["delivery_id"]


@pytest.mark.parametrize(("answers", "requests", "delivered"), [
    ([500, 503, 200], 3, True),
    ([429, 408, 204], 3, True),
    ([500, 500, 500, 500, 500], 5, False),
    ([400], 1, False),
    ([404, 200], 1, False),
])
async def test_retries_until_2xx_and_gives_up_on_a_4xx(vix: VixClient, server: TestServer, receiver: Receiver,
                                                       answers: list[int], requests: int, delivered: bool) -> None:
    receiver.answers = list(answers)
    [task_id] = await vix.create_task(FLOW, files={"image": SAMPLE}, webhook_url=receiver.url)
    await vix.cancel_task(task_id)
    outcome = await _outcome(server, task_id)
    assert (outcome.delivered, outcome.attempts, len(receiver.requests)) == (delivered, requests, requests)
    ids = {_verified(headers, body)["delivery_id"] for headers, body in receiver.requests}
    assert len(ids) == 1, "every attempt carries the same delivery"


@pytest.mark.parametrize(("target", "allow"), [
    ("http://127.0.0.1:{port}/hook", ()),
    ("http://127.0.0.1:{port}/hook", ("other.example",)),
    ("http://localhost:{port}/hook", ("127.0.0.1",)),
    ("http://[::1]:{port}/hook", ("127.0.0.1",)),
    ("http://10.0.0.1:{port}/hook", ("127.0.0.1",)),
    ("http://169.254.169.254/latest/meta-data", ("127.0.0.1",)),
    ("http://[::ffff:127.0.0.1]:{port}/hook", ()),
])
async def test_non_public_targets_are_refused_and_never_reached(
        vix: VixClient, server: TestServer, receiver: Receiver, target: str, allow: tuple[str, ...]) -> None:
    _deliverer(server).allow_hosts = allow
    port = receiver.url.split(":")[2].split("/")[0]
    [task_id] = await vix.create_task(FLOW, files={"image": SAMPLE}, webhook_url=target.format(port=port))
    await vix.cancel_task(task_id)
    outcome = await _outcome(server, task_id)
    assert not outcome.delivered and outcome.attempts == 1
    assert outcome.reason is not None and outcome.reason.startswith("refused")
    assert receiver.requests == []


async def test_a_redirect_is_a_failure_and_never_followed(vix: VixClient, server: TestServer, receiver: Receiver,
                                                          aiohttp_server: Any) -> None:
    elsewhere = await _receiver(aiohttp_server)
    receiver.answers = [(302, elsewhere.url), (307, elsewhere.url)]
    [task_id] = await vix.create_task(FLOW, files={"image": SAMPLE}, webhook_url=receiver.url)
    await vix.cancel_task(task_id)
    outcome = await _outcome(server, task_id)
    assert not outcome.delivered and "302" in (outcome.reason or "")
    assert len(receiver.requests) == 1 and elsewhere.requests == []


@pytest.mark.parametrize(("fields", "problem"), [
    ({"webhook_url": "ftp://example.com/"}, "webhook_url"),
    ({"webhook_url": "http://"}, "webhook_url"),
    ({"webhook_url": ["http://example.com/"]}, "webhook_url"),
    ({"webhook_url": "https://example.com/", "webhook_headers": {"Host": "x"}}, "webhook_headers"),
    ({"webhook_url": "https://example.com/", "webhook_headers": {"X-A": "1\r\nX-B: 2"}}, "webhook_headers"),
    ({"webhook_url": "https://example.com/", "webhook_headers": "X-A: 1"}, "webhook_headers"),
    ({"webhook_headers": {"X-A": "1"}}, "webhook_headers"),
])
async def test_bad_webhook_fields_are_400_with_nothing_created(http: TestClient, vix: VixClient, services: Services,
                                                               fields: dict[str, Any], problem: str) -> None:
    response = await http.post("/vapi/tasks", json={"flow": FLOW, "params": {}, **fields})
    assert response.status == 400
    reply = await response.json()
    assert reply["error"] == "invalid_request" and problem in reply["details"]
    form = {"flow": FLOW, "image": SAMPLE.open("rb")}
    form.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()})
    response = await http.post("/vapi/tasks", data=form)
    assert response.status == 400
    assert problem in (await response.json())["details"]
    assert await vix.list_tasks() == [] and staging_leftovers(services) == []


async def test_a_task_a_database_worker_finishes_is_found_in_the_database_and_posted(
        vix: VixClient, server: TestServer, services: Services, receiver: Receiver) -> None:
    """A Database-FS worker writes straight to the database: the server's event hub hears nothing, so the watcher's
    look at the tasks with webhooks finds the end."""
    elsewhere = TaskQueue(services.queue.engine)  # another process's queue: publishes no event here
    await elsewhere.upsert_worker(WorkerRecord(worker_id="db-worker", mode="WORKER_DB", device="cpu",
                                               installed_flows=[FLOW], current_task_id=None,
                                               last_seen_at=datetime.now(UTC)))
    watcher = server.app[WEBHOOKS].watcher
    assert watcher is not None
    watcher.interval_s = 0.05
    [task_id] = await vix.create_task(FLOW, files={"image": SAMPLE}, webhook_url=receiver.url)
    await asyncio.sleep(0.3)  # a look sees it pending
    claimed = await elsewhere.claim_next("db-worker", [FLOW])
    assert claimed is not None and claimed.id == task_id
    await elsewhere.mark_finished(task_id, claimed.lease_token, timings={})
    assert (await _outcome(server, task_id)).delivered
    [(headers, body)] = receiver.requests
    assert _verified(headers, body)["event"] == "task_finished"
    await elsewhere.aclose()


async def test_a_comfyui_prompt_takes_its_webhook_from_extra_data(server: TestServer, services: Services,
                                                                  receiver: Receiver) -> None:
    from tests.unit.server.comfy.test_comfy_prompts import solid_prompt

    async with TestClient(server) as http:
        bad = await http.post("/prompt", json={"prompt": solid_prompt(), "extra_data": {"webhook_url": "ftp://x"}})
        assert bad.status == 400 and (await bad.json())["error"]["type"] == "invalid_webhook"
        assert await services.queue.list() == []
        answer = await http.post("/prompt", json={"prompt": solid_prompt(), "extra_data": {
            "webhook_url": receiver.url, "webhook_headers": {"Authorization": "Bearer prompt-hook"}}})
        assert answer.status == 200, await answer.text()
        prompt_id = (await answer.json())["prompt_id"]
        [task] = await services.queue.list()
        assert task.webhook == {"url": receiver.url, "headers": {"Authorization": "Bearer prompt-hook"}}
        await services.queue.cancel(task.id)
        assert (await _outcome(server, task.id)).delivered
        [(headers, body)] = receiver.requests
        assert headers["Authorization"] == "Bearer prompt-hook" and _verified(headers, body)["task_id"] == task.id
        shown = json.dumps([await (await http.get("/queue")).json(), await (await http.get("/history")).json(),
                            await (await http.get(f"/api/jobs/{prompt_id}")).json()])
        assert "prompt-hook" not in shown and "webhook_headers" not in shown
