"""Fixtures for the flows tests: an ``object_info`` built from our node packs, and the models catalog.

``pack_object_info`` imports the packs under ``comfy_nodes/`` that exist and describes their classes in the
``/object_info`` shape with a small local helper (to be replaced by ``NodeRegistry`` once it is settled).
"""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest

from tests.unit.flows.helpers import CORPUS, describe_class

PACKS = ("comfy_nodes.vix_ui", "comfy_nodes.primitives", "comfy_nodes.image_io", "comfy_nodes.image_ops")


@pytest.fixture(scope="session")
def pack_object_info() -> dict[str, dict[str, Any]]:
    """``object_info`` of every class our packs export (packs that cannot be imported yet are skipped)."""
    info: dict[str, dict[str, Any]] = {}
    for pack_name in PACKS:
        try:
            pack = importlib.import_module(pack_name)
        except ImportError:
            continue
        titles = getattr(pack, "NODE_DISPLAY_NAME_MAPPINGS", {})
        for class_name, node_class in pack.NODE_CLASS_MAPPINGS.items():
            info[class_name] = describe_class(class_name, node_class, titles.get(class_name))
    return info


@pytest.fixture(scope="session")
def models_catalog() -> dict[str, Any]:
    return json.loads((CORPUS / "models_catalog.json").read_text())
