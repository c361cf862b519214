from __future__ import annotations

from visionatrix.executor import events
from visionatrix.worker.progress import ProgressTracker


def test_progress_counts_finished_nodes_and_fills_the_current_share():
    tracker = ProgressTracker()
    tracker(events.ExecutionStarted("t", 4))
    assert tracker.percent == 0.0
    tracker(events.NodeStarted("t", "1", "A", 1, 4))
    tracker(events.NodeFinished("t", "1", "A", 0.1))
    assert tracker.percent == 25.0
    tracker(events.NodeStarted("t", "2", "Slow", 2, 4))
    tracker(events.NodeProgressed("t", "2", 5, 10))
    assert tracker.percent == 37.5
    assert tracker.current_node == "2"


def test_progress_stays_below_100_until_the_task_is_finished():
    tracker = ProgressTracker()
    tracker(events.ExecutionStarted("t", 1))
    tracker(events.NodeStarted("t", "1", "A", 1, 1))
    tracker(events.NodeFinished("t", "1", "A", 0.1))
    assert tracker.percent == 99.0


def test_changed_is_set_by_events_and_cleared_when_reported():
    tracker = ProgressTracker()
    assert not tracker.changed
    tracker(events.ExecutionStarted("t", 2))
    assert tracker.changed
    tracker.mark_reported()
    assert not tracker.changed
    tracker(events.NodesCached("t", ["1"]))
    assert not tracker.changed


def test_more_nodes_than_planned_raise_the_plan():
    tracker = ProgressTracker()
    tracker(events.ExecutionStarted("t", 1))
    tracker(events.NodeStarted("t", "1", "A", 1, 1))
    tracker(events.NodeFinished("t", "1", "A", 0.1))
    tracker(events.NodeStarted("t", "2", "B", 2, 2))
    assert tracker.percent == 50.0
