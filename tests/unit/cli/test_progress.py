from __future__ import annotations

import io

from visionatrix.cli.progress import ProgressPrinter
from visionatrix.executor import events


def feed(printer: ProgressPrinter) -> None:
    for event in (events.ExecutionStarted("p", 2), events.NodeStarted("p", "1", "Slow", 1, 2),
                  *(events.NodeProgressed("p", "1", v, 20) for v in range(1, 21)),
                  events.NodeFinished("p", "1", "Slow", 0.5), events.NodeStarted("p", "2", "SaveImage", 2, 2),
                  events.NodeFinished("p", "2", "SaveImage", 0.1), events.ExecutionFinished("p", 0.6)):
        printer(event)


def test_plain_output_prints_one_line_per_step_and_throttles_progress():
    stream = io.StringIO()
    feed(ProgressPrinter(stream, tty=False))
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[1/2] Slow (node 1) started"
    percent_lines = [line for line in lines if line.endswith("%")]
    assert 5 <= len(percent_lines) <= 11
    assert "[1/2] Slow (node 1) done in 0.500 s" in lines
    assert lines[-1] == "finished in 0.60 s"
    assert "\r" not in stream.getvalue()


def test_terminal_output_redraws_one_bar_line():
    stream = io.StringIO()
    feed(ProgressPrinter(stream, tty=True))
    text = stream.getvalue()
    assert text.count("\r[") >= 20
    assert "2/2 SaveImage (node 2) 100%" in text
    assert text.rstrip().endswith("finished in 0.60 s")
