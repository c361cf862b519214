"""Task events pushed to clients: a WebSocket (``/vapi/events``) and Server-Sent Events (``/vapi/events/stream``).

Both take an optional ``?task_id=``. The first message is ``{"type": "subscribed", "task_id": ...}``; every event
after it reaches the client, so a client may read a task's state once it has that message and then rely on events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web

from visionatrix.server import jsonio, parsing
from visionatrix.server.errors import BadRequest
from visionatrix.server.event_feed import EventFeed, LiveStreams
from visionatrix.server.identity import identity
from visionatrix.server.services import SERVICES
from visionatrix.server.task_owners import TASK_OWNERS

log = logging.getLogger(__name__)

STREAMS = web.AppKey("event_streams", LiveStreams)
HEARTBEAT_S = 20.0
SSE_KEEPALIVE_S = 15.0


def _task_filter(request: web.Request) -> int | None:
    problems = {name: "unknown query parameter" for name in request.query if name != "task_id"}
    raw = request.query.get("task_id")
    value = None if raw is None else parsing.int_value("task_id", raw, low=1, high=parsing.MAX_ROW_ID,
                                                       problems=problems)
    if problems:
        lines = "; ".join(f"{name}: {why}" for name, why in problems.items())
        raise BadRequest("invalid_query", f"the query is malformed: {lines}", problems)
    return value


def _feed(request: web.Request, task_id: int | None) -> EventFeed:
    """The caller's feed: an admin (or anyone, with sign-in off) sees every event, a user their own tasks'."""
    caller = identity(request)
    owners = request.app[TASK_OWNERS]

    async def visible(event: dict[str, object]) -> bool:
        return await owners.visible(caller, event)

    return EventFeed(request.app[SERVICES].events, task_id, request.app[STREAMS].closing,
                     None if caller.is_admin else visible)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    task_id = _task_filter(request)
    streams = request.app[STREAMS]
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S)
    await ws.prepare(request)
    feed = _feed(request, task_id)
    await feed.start(streams)
    streams.sockets.add(ws)
    pump = asyncio.create_task(_pump(ws, feed))
    try:
        await ws.send_str(jsonio.dumps({"type": "subscribed", "task_id": task_id}))
        async for msg in ws:  # clients have nothing to say; reading notices when they leave
            if msg.type == WSMsgType.TEXT and msg.data == "ping":
                await ws.send_str(jsonio.dumps({"type": "pong"}))
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pump
        await feed.close()
        streams.sockets.discard(ws)
    return ws


async def _pump(ws: web.WebSocketResponse, feed: EventFeed) -> None:
    try:
        while not ws.closed:
            event = await feed.next()
            if event is not None:
                await ws.send_str(jsonio.dumps(event))
    except StopAsyncIteration:
        pass
    except ConnectionError:
        log.debug("event socket closed while sending")
    if not ws.closed:
        await ws.close()


async def server_sent_events(request: web.Request) -> web.StreamResponse:
    task_id = _task_filter(request)
    headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if request.method == "HEAD":  # the headers alone: a body after them would break a kept-alive connection
        return web.Response(headers=headers)
    response = web.StreamResponse(headers=headers)
    await response.prepare(request)
    feed = _feed(request, task_id)
    await feed.start(request.app[STREAMS])
    try:
        await response.write(_sse({"type": "subscribed", "task_id": task_id}))
        while True:
            event = await feed.next(idle_s=SSE_KEEPALIVE_S)
            await response.write(b": keepalive\n\n" if event is None else _sse(event))
    except (StopAsyncIteration, ConnectionError):
        pass
    finally:
        await feed.close()
    return response


def _sse(event: dict[str, object]) -> bytes:
    return f"data: {jsonio.dumps(event)}\n\n".encode()
