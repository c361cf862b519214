"""``WakeupNotifier``: the first notice of a flow goes out at once, a burst costs at most one per interval, and the
last task of a burst is always announced."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from typing import Any, cast

from visionatrix.db.postgres_writer import PostgresWriter
from visionatrix.queue.notifier import NOTIFY_SQL, WakeupNotifier


class RecordingWriter:
    """Stands in for the PostgreSQL writer: records each notice's flow and time (a round trip of ``delay_s``)."""

    def __init__(self, delay_s: float = 0.001) -> None:
        self.delay_s = delay_s
        self.sent: list[tuple[str, float]] = []

    async def execute(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        assert sql == NOTIFY_SQL
        await asyncio.sleep(self.delay_s)
        self.sent.append((args[1], asyncio.get_running_loop().time()))
        return []


async def test_a_lone_task_is_announced_at_once() -> None:
    writer = RecordingWriter()
    notifier = WakeupNotifier(cast(PostgresWriter, writer), interval_s=0.05)
    started = asyncio.get_running_loop().time()
    notifier.notify("a")
    await asyncio.sleep(0.01)
    assert [flow for flow, _ in writer.sent] == ["a"]
    assert writer.sent[0][1] - started < 0.01
    await notifier.flush()


async def test_a_burst_sends_one_notice_per_interval_and_announces_its_end() -> None:
    writer = RecordingWriter()
    notifier = WakeupNotifier(cast(PostgresWriter, writer), interval_s=0.02)
    first_task = asyncio.get_running_loop().time()
    for _ in range(50):  # 50 tasks over about 0.1 s
        notifier.notify("a")
        notifier.notify("b")
        await asyncio.sleep(0.002)
    last_task = asyncio.get_running_loop().time()
    await notifier.flush()
    for flow in ("a", "b"):
        times = [at for name, at in writer.sent if name == flow]
        assert 2 <= len(times) <= (last_task - first_task) / 0.02 + 2, times  # not one per task
        assert times[-1] >= last_task  # the burst's last tasks were announced after they were queued
        assert all(later - earlier >= 0.019 for earlier, later in itertools.pairwise(times))
    assert notifier.sent == len(writer.sent)
    assert not notifier._sending  # nothing left on its way
