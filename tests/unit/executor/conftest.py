from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.unit.executor import fake_nodes
from visionatrix.executor.run import Executor, ExecutorSettings
from visionatrix.nodes.registry import NodeRegistry


@pytest.fixture
def registry() -> NodeRegistry:
    fake_nodes.CALLS.clear()
    fake_nodes.Collect.received = []
    fake_nodes.Slow.on_third_step = None
    return fake_nodes.make_registry()


@pytest.fixture
def executor(registry: NodeRegistry, tmp_path) -> Iterator[Executor]:
    ex = Executor(registry, ExecutorSettings(device="cpu", output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp",
                                             input_dir=tmp_path / "in", cache_max_entries=64))
    yield ex
    ex.close()
