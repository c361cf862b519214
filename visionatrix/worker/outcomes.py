"""How a held task ends: the outcome of its run stored through the source (finish, fail, cancelled or release), then
the task let go of (its lease no longer kept, its local files removed). A mixin of
:class:`visionatrix.worker.daemon.Worker`."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from visionatrix.errors import LeaseLost
from visionatrix.executor import events
from visionatrix.worker.held import HeldTask
from visionatrix.worker.outputs import output_files, temp_files
from visionatrix.worker.source import SourceStopped, TaskSource

log = logging.getLogger("visionatrix.worker.daemon")


@dataclass
class Outcome:
    """How a run ended: ``finished`` (with ``result``), ``failed`` (with the error), ``interrupted``, ``dropped``."""

    kind: str
    result: events.ExecutionResult | None = None
    error: dict[str, Any] = field(default_factory=dict)


class WorkerOutcomes:
    """Needs the worker's ``source``, its report event and its ``_halt``."""

    source: TaskSource
    _report_due: asyncio.Event

    def _halt(self, exc: SourceStopped) -> None:
        raise NotImplementedError

    async def _conclude(self, held: HeldTask, outcome: Outcome) -> None:
        """Store how the run ended (the lease is kept meanwhile), then remove the task's local files."""
        task = held.task
        if held.lease_lost or outcome.kind == "dropped":
            log.warning("task %s: lease lost; its result is dropped", task.id)
            await self._drop(held, release=False)
        elif outcome.kind == "finished":
            assert outcome.result is not None
            await self._settle(held, self._finish(held, outcome.result))
        elif outcome.kind == "failed":
            await self._settle(held, self.source.fail(task, **outcome.error))
        elif held.cancel_requested:
            await self._settle(held, self.source.cancelled(task))
        else:
            await self._settle(held, self.source.release(task))

    async def _finish(self, held: HeldTask, result: events.ExecutionResult) -> None:
        """Store the results; when that fails for another reason than the lease, fail the task with it."""
        task = held.task
        assert held.output_dir is not None
        outputs = await asyncio.to_thread(output_files, held.output_dir, result)
        temps = await asyncio.to_thread(temp_files, held.output_dir, result)
        if result.peak_vram_bytes is not None:
            log.info("task %s: peak VRAM %.1f MiB", task.id, result.peak_vram_bytes / 2**20)
        try:
            await self.source.finish(task, result.timings_s, outputs, peak_vram_bytes=result.peak_vram_bytes,
                                     temps=temps)
        except (LeaseLost, SourceStopped):
            raise
        except Exception as exc:
            log.exception("task %s: storing its results failed", task.id)
            await self.source.fail(task, node_id=None, class_type=None, message=f"storing the results failed: {exc}",
                                   traceback=traceback.format_exc(), peak_vram_bytes=result.peak_vram_bytes)

    async def _settle(self, held: HeldTask, call: Awaitable[None]) -> None:
        """Await the call that ends the task's run, then let go of the task."""
        try:
            await call
        except LeaseLost:
            log.warning("task %s: lease lost before its outcome was stored; dropped", held.task.id)
        except SourceStopped as exc:
            self._halt(exc)
        except Exception:
            log.exception("task %s: its outcome could not be stored", held.task.id)
        finally:
            await self._drop(held, release=False)

    async def _drop(self, held: HeldTask, *, release: bool) -> None:
        """Stop keeping the task's lease (after releasing it, with ``release``) and remove its local files."""
        await held.stop_keeping()
        if release:
            try:
                await self.source.release(held.task)
            except LeaseLost:
                log.warning("task %s: lease lost before it was released", held.task.id)
            except Exception:
                log.exception("task %s: releasing it failed; its lease will run out", held.task.id)
        try:
            await self.source.cleanup(held.task)
        except Exception:
            log.exception("task %s: removing its local files failed", held.task.id)
        self._report_due.set()
