"""Every official ComfyUI workflow template (``comfyui-workflow-templates-json``) goes through the flow-info import
path: it imports, or it names the node types our registry lacks — never a crash or a generic error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from visionatrix.flows import load_flow

templates_json = pytest.importorskip("comfyui_workflow_templates_json")
TEMPLATES = sorted(
    path
    for path in (Path(templates_json.__file__).parent / "templates").glob("*.json")
    if not path.name.startswith(("index", "fuse_options"))
)


def test_the_package_holds_the_templates_we_counted() -> None:
    assert len(TEMPLATES) == 644


@pytest.mark.parametrize("path", TEMPLATES, ids=[path.stem for path in TEMPLATES])
def test_template_imports_or_names_what_is_missing(path: Path, pack_object_info: dict[str, Any]) -> None:
    flow = load_flow(json.loads(path.read_text()), pack_object_info, name=path.stem)
    assert flow.graph
    for node_id, node in flow.graph.items():
        assert node["class_type"] in pack_object_info or node["class_type"] in flow.missing_node_types, node_id
    assert flow.missing_node_types == sorted(
        {node["class_type"] for node in flow.graph.values()} - set(pack_object_info)
    )


def test_a_subgraph_template_flattens_like_the_editor(pack_object_info: dict[str, Any]) -> None:
    """image_flux2: subgraph node 68 holds the model; checked by hand against the template's JSON."""
    path = next(path for path in TEMPLATES if path.stem == "image_flux2")
    graph = load_flow(json.loads(path.read_text()), pack_object_info, name=path.stem).graph
    inner = {node_id for node_id in graph if node_id.startswith("68:")}
    assert inner and all(node_id.count(":") == 1 for node_id in inner)
    assert graph["68:6"]["class_type"] == "CLIPTextEncode"
    assert isinstance(graph["68:6"]["inputs"]["text"], str) and graph["68:6"]["inputs"]["text"]
