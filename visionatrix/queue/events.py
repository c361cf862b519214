"""``TaskEvents``: in-process pub/sub of task events.

``publish`` never blocks and never waits for a subscriber; each subscriber has a bounded buffer, and when it is
full the oldest event is dropped (counted in ``Subscription.dropped``). ``subscribe()`` registers the subscriber
at once, so a caller can subscribe, read the current state, and miss no event published in between.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any

Event = dict[str, Any]
EVENT_TYPES = ("task_queued", "task_claimed", "task_started", "task_progressed", "task_finished", "task_failed",
               "task_cancelled", "task_deleted", "task_restarted", "worker_updated", "flows_changed", "model_progress",
               "models_changed")


class Subscription:
    """One subscriber's stream of events: an async iterator; ``aclose()`` unregisters it and ends the stream."""

    def __init__(self, hub: TaskEvents, buffer_size: int) -> None:
        self._hub = hub
        self._buffer: collections.deque[Event] = collections.deque(maxlen=buffer_size)
        self._ready = asyncio.Event()
        self.closed = False
        self.dropped = 0
        """Events lost because this subscriber fell more than ``buffer_size`` events behind."""

    def _put(self, event: Event) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append(event)
        self._ready.set()

    def drain(self) -> list[Event]:
        """Every event buffered now, oldest first, without waiting."""
        events = list(self._buffer)
        self._buffer.clear()
        return events

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._buffer:
            if self.closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._buffer.popleft()

    async def aclose(self) -> None:
        """Stop receiving events and end the stream now: a pending or later ``__anext__`` raises
        ``StopAsyncIteration`` (events still buffered are discarded)."""
        self._buffer.clear()
        self._close()

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self._hub._subscribers.discard(self)
            self._ready.set()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._close()


class TaskEvents:
    """The hub. ``buffer_size`` bounds each subscriber's backlog."""

    def __init__(self, *, buffer_size: int = 1000) -> None:
        if buffer_size < 1:
            raise ValueError("buffer_size must be at least 1")
        self.buffer_size = buffer_size
        self._subscribers: set[Subscription] = set()

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every current subscriber; dropped when nobody is subscribed. Never blocks."""
        for subscriber in list(self._subscribers):
            subscriber._put(event)

    def subscribe(self) -> Subscription:
        """A new subscription, registered before this returns."""
        subscription = Subscription(self, self.buffer_size)
        self._subscribers.add(subscription)
        return subscription

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def close(self) -> None:
        """End every subscription at shutdown; each iterator still yields what it had buffered, then stops."""
        for subscriber in list(self._subscribers):
            subscriber._close()
