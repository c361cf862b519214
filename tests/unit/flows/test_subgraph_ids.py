"""Inner node ids that collide with others are renumbered the way the official editor does on load
(``visionatrix/flows/importers/subgraph_ids.py``), so the execution ids we import are the ones the editor queues."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.flows.test_ui_subgraphs import INNER
from tests.unit.flows.test_ui_workflow import OBJECT_INFO
from visionatrix.errors import InvalidFlow
from visionatrix.flows import load_flow
from visionatrix.flows.importers.subgraph_ids import editor_definitions
from visionatrix.flows.importers.ui_workflow import convert_ui_workflow


def workflow(inner_id: int, *, last_node_id: int | None = 9, root_ids: tuple[int, int] = (1, 9)) -> dict[str, Any]:
    """Checkpoint ``root_ids[0]`` -> subgraph node 5 (INNER, one CLIPTextEncode ``inner_id``) -> VAEDecode."""
    inner = copy.deepcopy(INNER)
    inner["nodes"][0]["id"] = inner_id
    inner["links"] = [[10, -10, 0, inner_id, 1, "CLIP"], [11, -10, 1, inner_id, 0, "STRING"],
                      [12, inner_id, 0, -20, 0, "CONDITIONING"]]
    data: dict[str, Any] = {
        "version": 0.4,
        "nodes": [
            {"id": root_ids[0], "type": "CheckpointLoaderSimple", "widgets_values": ["sd15.safetensors"]},
            {"id": 5, "type": "sg-encode", "inputs": [{"name": "clip", "type": "CLIP", "link": 1}]},
            {"id": root_ids[1], "type": "VAEDecode", "inputs": [{"name": "samples", "type": "LATENT", "link": 2}]},
        ],
        "links": [[1, root_ids[0], 1, 5, 0, "CLIP"], [2, 5, 0, root_ids[1], 0, "CONDITIONING"]],
        "definitions": {"subgraphs": [inner]},
    }
    if last_node_id is not None:
        data["last_node_id"] = last_node_id
    return data


def test_an_inner_id_free_in_the_workflow_is_kept() -> None:
    graph = convert_ui_workflow(workflow(3), OBJECT_INFO).graph
    assert sorted(graph) == ["1", "5:3", "9"]


def test_an_inner_id_taken_at_the_top_level_gets_the_next_id_after_last_node_id() -> None:
    data = workflow(9, last_node_id=20)
    original = copy.deepcopy(data)
    graph = convert_ui_workflow(data, OBJECT_INFO).graph
    assert sorted(graph) == ["1", "5:21", "9"]
    assert graph["5:21"]["inputs"] == {"text": "dog", "clip": ["1", 1]}  # its links follow it
    assert graph["9"]["inputs"] == {"samples": ["5:21", 0]}
    assert data == original, "the workflow given is left alone"


def test_a_fresh_id_skips_the_taken_ones() -> None:
    # last_node_id 3 is stale: inner 9 collides, and 4 and 5 are taken at the top level.
    data = workflow(9, last_node_id=3, root_ids=(4, 9))
    assert sorted(convert_ui_workflow(data, OBJECT_INFO).graph) == ["4", "5:6", "9"]


def test_without_last_node_id_the_schema_1_state_counts() -> None:
    data = workflow(9, last_node_id=None)
    data["version"], data["state"] = 1, {"lastNodeId": 40}
    assert editor_definitions(data)["sg-encode"]["nodes"][0]["id"] == 41
    data["version"] = 0.4  # the editor reads ``state`` of schema 1 only: the counter starts at 0; 1 is taken
    assert editor_definitions(data)["sg-encode"]["nodes"][0]["id"] == 2


def test_a_later_definition_colliding_with_an_earlier_one_is_renumbered_after_the_ids_read() -> None:
    data = workflow(30, last_node_id=9)  # reading inner 30 raises the counter from 9 to 30
    second = copy.deepcopy(data["definitions"]["subgraphs"][0])
    second["id"] = "sg-second"
    data["definitions"]["subgraphs"].append(second)
    data["nodes"].append({"id": 6, "type": "sg-second", "inputs": [{"name": "clip", "type": "CLIP", "link": 3}]})
    data["links"].append([3, 1, 1, 6, 0, "CLIP"])
    graph = convert_ui_workflow(data, OBJECT_INFO).graph
    assert sorted(graph) == ["1", "5:30", "6:31", "9"]
    assert graph["6:31"]["inputs"]["clip"] == ["1", 1]


def test_a_duplicate_id_inside_one_definition_is_still_reported() -> None:
    data = workflow(9)
    inner = data["definitions"]["subgraphs"][0]
    inner["nodes"].append(copy.deepcopy(inner["nodes"][0]))
    with pytest.raises(InvalidFlow, match="used twice"):
        convert_ui_workflow(data, OBJECT_INFO)


def test_the_official_template_the_editor_renumbers(pack_object_info: dict[str, Any]) -> None:
    """image_newbieimage_exp0_1-t2i: inner 43 and 49 collide with top-level nodes; the editor queues them as 41:53
    and 41:54 (seen in Chromium, tests/e2e/test_subgraph_prompts.py)."""
    templates = pytest.importorskip("comfyui_workflow_templates_json")
    path = Path(templates.__file__).parent / "templates" / "image_newbieimage_exp0_1-t2i.json"
    graph = load_flow(json.loads(path.read_text()), pack_object_info, name=path.stem).graph
    assert sorted(node_id for node_id in graph if node_id.startswith("41:")) == [
        "41:26", "41:3", "41:30", "41:31", "41:32", "41:34", "41:53", "41:54", "41:8"]
    assert graph["41:3"]["inputs"]["positive"] == ["41:53", 0]
    assert graph["41:3"]["inputs"]["negative"] == ["41:54", 0]
