"""UI workflows with subgraphs flatten to the graph the official editor queues (ids ``"<outer>:<inner>"``)."""

from __future__ import annotations

import copy
from typing import Any

from tests.unit.flows.test_ui_workflow import OBJECT_INFO
from visionatrix.flows.importers.ui_workflow import convert_ui_workflow

INNER = {
    "id": "sg-encode",
    "name": "Encode",
    "inputNode": {"id": -10},
    "outputNode": {"id": -20},
    "inputs": [{"name": "clip", "type": "CLIP", "linkIds": [10]}, {"name": "text", "type": "STRING", "linkIds": [11]}],
    "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "linkIds": [12]}],
    "nodes": [
        {
            "id": 3,
            "type": "CLIPTextEncode",
            "widgets_values": ["dog"],
            "inputs": [
                {"name": "text", "type": "STRING", "widget": {"name": "text"}, "link": 11},
                {"name": "clip", "type": "CLIP", "link": 10},
            ],
        }
    ],
    "links": [[10, -10, 0, 3, 1, "CLIP"], [11, -10, 1, 3, 0, "STRING"], [12, 3, 0, -20, 0, "CONDITIONING"]],
}


def workflow(*, mode: int = 0, widgets_values: list[Any] | None = None) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": 1, "type": "CheckpointLoaderSimple", "widgets_values": ["sd15.safetensors"]},
            {
                "id": 5,
                "type": "sg-encode",
                "mode": mode,
                "widgets_values": widgets_values if widgets_values is not None else [],
                "inputs": [
                    {"name": "clip", "type": "CLIP", "link": 1},
                    {"name": "text", "type": "STRING", "widget": {"name": "text"}, "link": None},
                ],
            },
            {"id": 9, "type": "VAEDecode", "inputs": [{"name": "samples", "type": "LATENT", "link": 2}]},
        ],
        "links": [[1, 1, 1, 5, 0, "CLIP"], [2, 5, 0, 9, 0, "CONDITIONING"]],
        "definitions": {"subgraphs": [copy.deepcopy(INNER)]},
    }


def test_inner_nodes_get_outer_colon_inner_ids_and_links_cross_the_boundary() -> None:
    graph = convert_ui_workflow(workflow(widgets_values=["cat"]), OBJECT_INFO).graph
    assert sorted(graph) == ["1", "5:3", "9"]
    assert graph["5:3"]["inputs"] == {"text": "cat", "clip": ["1", 1]}
    assert graph["9"]["inputs"] == {"samples": ["5:3", 0]}


def test_a_promoted_widget_without_a_value_keeps_the_inner_widget_value() -> None:
    graph = convert_ui_workflow(workflow(), OBJECT_INFO).graph
    assert graph["5:3"]["inputs"]["text"] == "dog"


def test_muted_and_bypassed_subgraph_nodes_drop_their_inner_nodes() -> None:
    for mode in (2, 4):
        graph = convert_ui_workflow(workflow(mode=mode), OBJECT_INFO).graph
        assert sorted(graph) == ["1", "9"], mode
        assert graph["9"]["inputs"] == {}, mode  # nothing of type CONDITIONING to forward when bypassed


def test_nested_subgraphs_chain_their_ids() -> None:
    outer = {
        "id": "sg-outer",
        "inputNode": {"id": -10},
        "outputNode": {"id": -20},
        "inputs": [{"name": "clip", "type": "CLIP", "linkIds": [20]}],
        "outputs": [{"name": "CONDITIONING", "type": "CONDITIONING", "linkIds": [21]}],
        "nodes": [
            {
                "id": 5,
                "type": "sg-encode",
                "widgets_values": ["owl"],
                "inputs": [{"name": "clip", "type": "CLIP", "link": 20}],
            },
        ],
        "links": [[20, -10, 0, 5, 0, "CLIP"], [21, 5, 0, -20, 0, "CONDITIONING"]],
    }
    data = {
        "nodes": [
            {"id": 1, "type": "CheckpointLoaderSimple", "widgets_values": ["sd15.safetensors"]},
            {"id": 7, "type": "sg-outer", "inputs": [{"name": "clip", "type": "CLIP", "link": 1}]},
            {"id": 9, "type": "VAEDecode", "inputs": [{"name": "samples", "type": "LATENT", "link": 2}]},
        ],
        "links": [[1, 1, 1, 7, 0, "CLIP"], [2, 7, 0, 9, 0, "CONDITIONING"]],
        "definitions": {"subgraphs": [outer, copy.deepcopy(INNER)]},
    }
    graph = convert_ui_workflow(data, OBJECT_INFO).graph
    assert sorted(graph) == ["1", "7:5:3", "9"]
    assert graph["7:5:3"]["inputs"] == {"text": "owl", "clip": ["1", 1]}
    assert graph["9"]["inputs"] == {"samples": ["7:5:3", 0]}
