"""Per-node progress on the terminal: a redrawn bar on a TTY, plain lines otherwise."""

from __future__ import annotations

import shutil
from typing import TextIO

from visionatrix.executor import events


class ProgressPrinter:
    """Prints executor events to ``stream``; ``tty`` chooses the redrawn bar or plain lines."""

    def __init__(self, stream: TextIO, *, tty: bool) -> None:
        self.stream = stream
        self.tty = tty
        self.planned = 0
        self.index = 0
        self.node = ""
        self._last_step: dict[str, int] = {}

    def __call__(self, event: events.Event) -> None:
        if isinstance(event, events.ExecutionStarted):
            self.planned = event.planned_nodes
        elif isinstance(event, events.NodesCached):
            self._line(f"{len(event.node_ids)} node(s) taken from the cache")
        elif isinstance(event, events.NodeStarted):
            self.index, self.planned = event.index, max(self.planned, event.planned_nodes)
            self.node = f"{event.class_type} (node {event.node_id})"
            self._show(0.0) if self.tty else self._line(f"[{self.index}/{self.planned}] {self.node} started")
        elif isinstance(event, events.NodeProgressed):
            self._progress(event)
        elif isinstance(event, events.NodeFinished):
            if self.tty:
                self._show(1.0)
            else:
                self._line(f"[{self.index}/{self.planned}] {self.node} done in {event.elapsed_s:.3f} s")
        elif isinstance(event, events.ExecutionFinished):
            self._end_bar()
            self._line(f"finished in {event.elapsed_s:.2f} s")
        elif isinstance(event, events.ExecutionFailed | events.ExecutionInterrupted):
            self._end_bar()

    def _progress(self, event: events.NodeProgressed) -> None:
        fraction = event.value / event.total if event.total else 0.0
        if self.tty:
            self._show(fraction)
            return
        step = int(fraction * 10)
        if step > self._last_step.get(event.node_id, -1):
            self._last_step[event.node_id] = step
            self._line(f"[{self.index}/{self.planned}] {self.node} {fraction:.0%}")

    def _show(self, fraction: float) -> None:
        width = max(10, min(40, shutil.get_terminal_size((80, 20)).columns - 60))
        done = (self.index - 1 + fraction) / max(self.planned, 1)
        filled = int(done * width)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r[{bar}] {self.index}/{self.planned} {self.node} {fraction:4.0%}\x1b[K")
        self.stream.flush()

    def _end_bar(self) -> None:
        if self.tty and self.index:
            self.stream.write("\n")
            self.index = 0

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
