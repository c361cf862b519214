"""Shared helpers for the flows tests: the Visionatrix corpus and node builders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.corpus import CORPUS

VIXFLOWS = CORPUS / "vixflows"


def corpus_paths() -> list[Path]:
    return sorted(VIXFLOWS.glob("*.json"))


def raw_corpus_flow(stem: str) -> dict[str, Any]:
    return json.loads((VIXFLOWS / f"{stem}.json").read_text())


def node(class_type: str, inputs: dict[str, Any] | None = None, title: str | None = None) -> dict[str, Any]:
    """An API-graph node."""
    result: dict[str, Any] = {"class_type": class_type, "inputs": dict(inputs or {})}
    if title is not None:
        result["_meta"] = {"title": title}
    return result


def metadata_node(name: str = "test_flow", **extra: Any) -> dict[str, Any]:
    inputs = {"name": name, "display_name": "Test Flow", "version": "1.0.0", "tags": '["a"]', "requires": "[]"}
    inputs.update(extra)
    return node("VixUiWorkflowMetadata", inputs)
