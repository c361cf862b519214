"""Progress events over the WebSocket and Server-Sent Events, and ``wait_for_task``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tests.unit.server.helpers import SAMPLE, finish_with_output
from visionatrix.client import VixClient, VixClientError
from visionatrix.server.services import Services


async def _next_of(events: object, wanted: str) -> dict:
    async for event in events:  # type: ignore[attr-defined]
        if event["type"] == wanted:
            return event
    raise AssertionError(f"the stream ended before a {wanted} event")


async def test_the_websocket_pushes_queue_progress_and_finish_events(vix: VixClient, services: Services) -> None:
    stream = vix.events()
    first = await asyncio.wait_for(anext(stream), 5)
    assert first == {"type": "subscribed", "task_id": None}
    [task_id] = await vix.create_task("web_resize_sharpen", files={"image": SAMPLE})
    queued = await asyncio.wait_for(_next_of(stream, "task_queued"), 5)
    assert queued["task_id"] == task_id and queued["flow"] == "web_resize_sharpen"
    claimed = await services.queue.claim_next("w1", ["web_resize_sharpen"])
    assert claimed is not None
    await services.queue.report_progress(task_id, claimed.lease_token, progress=40.0, current_node="6")
    progressed = await asyncio.wait_for(_next_of(stream, "task_progressed"), 5)
    assert progressed["task_id"] == task_id and progressed["progress"] == 40.0
    assert progressed["current_node"] == "6"
    await stream.aclose()


async def test_a_task_filter_only_passes_that_tasks_events(vix: VixClient, services: Services) -> None:
    [watched, other] = await vix.create_task("web_resize_sharpen", files={"image": SAMPLE}, count=2)
    stream = vix.events(task_id=watched)
    assert (await asyncio.wait_for(anext(stream), 5))["task_id"] == watched
    await vix.cancel_task(other)
    await vix.cancel_task(watched)
    event = await asyncio.wait_for(anext(stream), 5)
    assert (event["type"], event["task_id"]) == ("task_cancelled", watched)
    await stream.aclose()


async def test_a_bad_task_filter_is_refused_before_the_upgrade(http: TestClient, vix: VixClient) -> None:
    response = await http.get("/vapi/events?task_id=abc")
    assert response.status == 400
    assert (await response.json())["details"] == {"task_id": "expected a whole number from 1 to "
                                                  "9223372036854775807, got 'abc'"}
    with pytest.raises(VixClientError) as caught:
        await anext(vix.events(task_id=-1))
    assert caught.value.status == 400


async def test_wait_for_task_returns_when_the_task_ends(vix: VixClient, services: Services) -> None:
    [task_id] = await vix.create_task("web_resize_sharpen", files={"image": SAMPLE})
    waiter = asyncio.create_task(vix.wait_for_task(task_id, timeout_s=10))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await finish_with_output(services, task_id)
    task = await asyncio.wait_for(waiter, 5)
    assert task["status"] == "finished" and task["outputs"]


async def test_wait_for_task_returns_at_once_for_an_ended_task(vix: VixClient) -> None:
    [task_id] = await vix.create_task("web_resize_sharpen", files={"image": SAMPLE})
    await vix.cancel_task(task_id)
    assert (await vix.wait_for_task(task_id, timeout_s=5))["status"] == "cancelled"


async def test_wait_for_task_times_out(vix: VixClient) -> None:
    [task_id] = await vix.create_task("web_resize_sharpen", files={"image": SAMPLE})
    with pytest.raises(TimeoutError):
        await vix.wait_for_task(task_id, timeout_s=0.3)


async def test_wait_for_task_polls_when_the_websocket_is_unavailable(aiohttp_server: Any, server: TestServer,
                                                                    vix: VixClient, services: Services) -> None:
    """Behind a proxy that forwards the task routes but not the events WebSocket, waiting still works."""

    async def forward(request: web.Request) -> web.Response:
        async with vix.session.request(request.method, server.make_url(request.path_qs)) as answer:
            return web.Response(status=answer.status, body=await answer.read(), content_type=answer.content_type)

    proxy_app = web.Application()
    proxy_app.router.add_route("*", "/vapi/tasks/{tail:.*}", forward)
    proxy = await aiohttp_server(proxy_app)
    [task_id] = await vix.create_task("web_resize_sharpen", files={"image": SAMPLE})
    async with VixClient(str(proxy.make_url("/")), timeout_s=5) as behind_proxy:
        with pytest.raises(VixClientError) as caught:
            await anext(behind_proxy.events())
        assert caught.value.status == 404
        waiter = asyncio.create_task(behind_proxy.wait_for_task(task_id, timeout_s=10, poll_s=0.05))
        await asyncio.sleep(0.2)
        assert not waiter.done()
        await finish_with_output(services, task_id)
        assert (await asyncio.wait_for(waiter, 5))["status"] == "finished"


async def test_server_sent_events_carry_the_same_events(http: TestClient, vix: VixClient) -> None:
    response = await http.get("/vapi/events/stream")
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")

    async def next_data() -> dict:
        while True:
            line = (await response.content.readline()).decode().strip()
            if line.startswith("data: "):
                return json.loads(line[len("data: "):])

    assert await asyncio.wait_for(next_data(), 5) == {"type": "subscribed", "task_id": None}
    [task_id] = await vix.create_task("web_resize_sharpen", files={"image": SAMPLE})
    event = await asyncio.wait_for(next_data(), 5)
    assert (event["type"], event["task_id"]) == ("task_queued", task_id)
    response.close()


async def test_open_event_streams_end_when_the_server_shuts_down(http: TestClient, vix: VixClient,
                                                                 server: TestServer) -> None:
    stream = vix.events()
    assert (await asyncio.wait_for(anext(stream), 5))["type"] == "subscribed"
    sse = await http.get("/vapi/events/stream")
    assert (await asyncio.wait_for(sse.content.readline(), 5)).startswith(b"data: ")
    closing = asyncio.create_task(server.close())
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(stream), 5)
    assert await asyncio.wait_for(sse.content.read(), 5) in (b"", b"\n")
    await asyncio.wait_for(closing, 5)
