"""Fixtures for the flows tests: ``object_info`` from the real node registry, and the models catalog."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.flows.helpers import CORPUS
from visionatrix.nodes.registry import NodeRegistry

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def pack_object_info() -> dict[str, dict[str, Any]]:
    """``object_info`` of our packs under ``comfy_nodes/``, as the registry describes them."""
    registry = NodeRegistry()
    registry.load_packs([], core_dir=ROOT / "comfy_nodes")
    assert not registry.failures, registry.failures
    return registry.object_info()


@pytest.fixture(scope="session")
def models_catalog() -> dict[str, Any]:
    return json.loads((CORPUS / "models_catalog.json").read_text())
