"""``run-flow --json``: the result names the run's GPU memory peak when the executor measured one."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.unit.executor import fake_nodes
from visionatrix.cli import run_flow
from visionatrix.executor.run import Executor, ExecutorSettings

PROMPT = {"1": {"class_type": "Number", "inputs": {"value": 2}},
          "2": {"class_type": "Collect", "inputs": {"value": ["1", 0]}}}
FLOW = SimpleNamespace(name="numbers", manifest=SimpleNamespace(version="1.0.0"))


class MeasuredExecutor(Executor):
    """The real executor, with the peak a GPU run would report."""

    async def run_validated(self, *args: Any, **kwargs: Any) -> Any:
        result = await super().run_validated(*args, **kwargs)
        result.peak_vram_bytes = 12345
        return result


@pytest.mark.parametrize(("executor_class", "expected"), [(Executor, None), (MeasuredExecutor, 12345)])
def test_the_json_result_shows_the_peak_only_when_it_was_measured(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                  executor_class: type[Executor],
                                                                  expected: int | None) -> None:
    fake_nodes.Collect.received = []
    executor = executor_class(fake_nodes.make_registry(), ExecutorSettings(
        device="cpu", output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp", input_dir=tmp_path / "in"))
    try:
        assert run_flow._execute(executor, FLOW, PROMPT, tmp_path / "out", as_json=True) == 0  # type: ignore[arg-type]
    finally:
        executor.close()
    report = json.loads(capsys.readouterr().out)
    assert report["flow"] == "numbers" and set(report["timings_s"]) == {"1", "2"}
    assert report.get("peak_vram_bytes") == expected
    assert ("peak_vram_bytes" in report) is (expected is not None)
