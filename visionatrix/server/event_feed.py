"""One client's view of the task events: filtered by task and by what the client may see, with idle ticks, ended by
the server's shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, web

from visionatrix.queue.events import TaskEvents

INTERNAL_EVENTS = frozenset({"task_preview"})
"""Events that are not part of ``/vapi/events`` (a preview carries image bytes; ComfyUI's socket sends them)."""


class LiveStreams:
    """The open event streams of an application, closed when it shuts down."""

    def __init__(self) -> None:
        self.closing = asyncio.Event()
        self.sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self.listeners = 0
        """Open event streams (WebSocket and SSE): while there are none, nobody needs events of other processes."""

    async def close_all(self) -> None:
        self.closing.set()
        for ws in list(self.sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


class EventFeed:
    """``next()`` returns the next event for ``task_id`` (all tasks when None), or None after ``idle_s``.

    The subscription is live once ``start()`` returns, so a client told "subscribed" misses nothing after that.
    ``StopAsyncIteration`` ends the feed (the server is shutting down, or the event source ended).
    """

    def __init__(self, events: TaskEvents, task_id: int | None, closing: asyncio.Event,
                 visible: Callable[[dict[str, Any]], Awaitable[bool]] | None = None) -> None:
        self.events = events
        self.task_id = task_id
        self.visible = visible
        """Whether the client may see an event (a user only their own tasks'); None: every event."""
        self.closing = closing
        self._source: AsyncIterator[dict[str, Any]] | None = None
        self._next: asyncio.Future[dict[str, Any]] | None = None
        self._closing_wait: asyncio.Task[bool] | None = None
        self._streams: LiveStreams | None = None

    async def start(self, streams: LiveStreams | None = None) -> None:
        """Subscribe; counted in ``streams.listeners`` until ``close()``."""
        self._streams = streams
        if streams is not None:
            streams.listeners += 1
        self._source = aiter(self.events.subscribe())
        self._pull()
        self._closing_wait = asyncio.ensure_future(self.closing.wait())
        await asyncio.sleep(0)  # let a generator-based subscription run up to its registration

    def _pull(self) -> asyncio.Future[dict[str, Any]]:
        assert self._source is not None
        if self._next is None:
            self._next = asyncio.ensure_future(anext(self._source))
        return self._next

    async def next(self, idle_s: float | None = None) -> dict[str, Any] | None:
        assert self._closing_wait is not None
        loop = asyncio.get_running_loop()
        deadline = None if idle_s is None else loop.time() + idle_s
        while True:
            pending = self._pull()
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            waiters: set[asyncio.Future[Any]] = {pending, self._closing_wait}
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if self.closing.is_set():
                raise StopAsyncIteration
            if not pending.done():
                return None
            self._next = None
            event = pending.result()
            if event.get("type") in INTERNAL_EVENTS:
                continue
            if self.task_id is not None and event.get("task_id") != self.task_id:
                continue
            if self.visible is None or await self.visible(event):
                return event

    async def close(self) -> None:
        if self._streams is not None:
            self._streams.listeners -= 1
            self._streams = None
        for waiter in (self._next, self._closing_wait):
            if waiter is not None and not waiter.done():
                waiter.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await waiter
        self._next = None
        aclose = getattr(self._source, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(RuntimeError):
                await aclose()
