"""Task progress from executor events: a percentage and the current node, for throttled reports."""

from __future__ import annotations

from typing import Any

from visionatrix.executor import events


class ProgressTracker:
    """Folds executor events into ``percent`` (0..99 while running) and ``current_node`` (the submitted graph's node:
    for a node made by expansion, the node that expanded).

    Each executed node is an equal share of the run; in-node progress fills the current share. ``changed`` tells the
    reporter whether there is anything new to write since it last called :meth:`mark_reported`.
    """

    def __init__(self) -> None:
        self.planned = 0
        self.finished = 0
        self.fraction = 0.0
        self.current_node: str | None = None
        self.changed = False
        self.preview: tuple[str, Any] | None = None
        """The newest preview not sent yet: ``(node id, what the node passed)``."""

    def __call__(self, event: events.Event) -> None:
        if isinstance(event, events.ExecutionStarted):
            self.planned = event.planned_nodes
        elif isinstance(event, events.NodeStarted):
            self.planned = max(self.planned, event.planned_nodes)
            # the node the client sees: a node made by expansion shows as the graph's node that expanded
            self.current_node, self.fraction = event.display_node_id or event.node_id, 0.0
        elif isinstance(event, events.NodeProgressed) and event.total:
            self.fraction = min(1.0, max(0.0, event.value / event.total))
            if event.preview is not None:
                self.preview = (event.node_id, event.preview)
        elif isinstance(event, events.NodeFinished):
            self.finished += 1
            self.fraction = 0.0
        else:
            return
        self.changed = True

    @property
    def percent(self) -> float:
        if self.planned <= 0:
            return 0.0
        return round(min(99.0, 100.0 * (self.finished + self.fraction) / self.planned), 2)

    def mark_reported(self) -> None:
        self.changed = False

    def take_preview(self) -> tuple[str, Any] | None:
        """The newest preview since the last call (None: none)."""
        preview, self.preview = self.preview, None
        return preview
