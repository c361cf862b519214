"""TaskEvents: registered on subscribe, never blocks the publisher, bounded per subscriber, closable."""

from __future__ import annotations

import asyncio

import pytest

from visionatrix.queue.events import TaskEvents


def event(n: int) -> dict:
    return {"type": "task_progressed", "task_id": n, "flow": "f", "progress": float(n), "current_node": "1"}


async def test_a_subscriber_gets_events_published_after_subscribe_returns_before_it_iterates():
    events = TaskEvents()
    subscription = events.subscribe()  # registered now, not on the first __anext__
    events.publish(event(1))
    events.publish(event(2))

    assert [await anext(subscription), await anext(subscription)] == [event(1), event(2)]


async def test_events_published_with_nobody_subscribed_are_dropped():
    events = TaskEvents()
    events.publish(event(1))
    subscription = events.subscribe()
    events.publish(event(2))

    assert await anext(subscription) == event(2)


async def test_every_subscriber_gets_every_event():
    events = TaskEvents()
    first, second = events.subscribe(), events.subscribe()
    events.publish(event(1))

    assert await anext(first) == event(1)
    assert await anext(second) == event(1)


async def test_a_slow_subscriber_loses_the_oldest_events_and_the_publisher_never_waits():
    events = TaskEvents(buffer_size=3)
    slow = events.subscribe()
    for n in range(10):
        events.publish(event(n))  # would block or raise if it waited for the subscriber

    assert [(await anext(slow))["task_id"] for _ in range(3)] == [7, 8, 9]
    assert slow.dropped == 7


async def test_a_waiting_subscriber_wakes_on_publish():
    events = TaskEvents()
    subscription = events.subscribe()
    waiter = asyncio.create_task(anext(subscription))
    await asyncio.sleep(0)
    assert not waiter.done()

    events.publish(event(5))

    assert await asyncio.wait_for(waiter, 1) == event(5)


async def test_aclose_unregisters_and_ends_the_iteration():
    events = TaskEvents()
    subscription = events.subscribe()
    waiter = asyncio.create_task(anext(subscription))
    await asyncio.sleep(0)

    await subscription.aclose()

    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiter, 1)
    assert events.subscriber_count == 0
    events.publish(event(1))
    with pytest.raises(StopAsyncIteration):
        await anext(subscription)


async def test_async_for_over_a_subscription_ends_when_the_hub_closes():
    events = TaskEvents()
    subscription = events.subscribe()
    events.publish(event(1))
    events.publish(event(2))
    events.close()

    assert [e["task_id"] async for e in subscription] == [1, 2]
    assert events.subscriber_count == 0


async def test_a_subscription_is_an_async_context_manager():
    events = TaskEvents()
    async with events.subscribe() as subscription:
        assert events.subscriber_count == 1
        events.publish(event(1))
        assert await anext(aiter(subscription)) == event(1)
    assert events.subscriber_count == 0


def test_buffer_size_must_be_positive():
    with pytest.raises(ValueError):
        TaskEvents(buffer_size=0)
