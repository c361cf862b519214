"""``wait_event``: wait for an event with a timeout, without the cancellation that ``asyncio.wait_for`` can swallow.

On Python 3.11 a task cancelled in ``asyncio.wait_for(event.wait(), ...)`` just as the event is set may go on as if
nothing happened; a loop that waits like that then never ends. ``asyncio.timeout`` counts cancellations right.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until ``event`` is set, at most ``timeout_s`` seconds; whether it is set."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(max(0.0, timeout_s)):
            await event.wait()
    except TimeoutError:
        pass
    return event.is_set()


async def cancel_and_wait(job: asyncio.Task[Any] | None) -> None:
    """Cancel ``job`` and wait until it has ended (cancelled again should it go on), without swallowing a
    cancellation of the caller; its outcome is discarded."""
    if job is None:
        return
    while not job.done():
        job.cancel()
        await asyncio.wait([job], timeout=1.0)
    if not job.cancelled():
        job.exception()  # retrieved, so it is never reported as unhandled
