"""Nodes made by expansion, seen by a ComfyUI client: their results are under the ids they ran under
(``"<node>.<call>.<id>"``) with ComfyUI's ``display_node`` naming the graph's node that expanded (for nested
expansions too), in ``executed`` messages and in ``/history`` (what the worker reports as the running node is
tested with the executor, tests/unit/executor/test_expansion.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.unit.server.comfy.test_comfy_prompts import _post, _run_all
from tests.unit.server.comfy.test_comfy_socket import _messages
from tests.unit.server.helpers import ROOT
from visionatrix.nodes.registry import NodeRegistry
from visionatrix.server.services import Services

PACKS = ROOT / "tests" / "unit" / "nodes" / "fixtures" / "v3_packs"


@pytest.fixture(scope="module")
def registry() -> NodeRegistry:
    """The shipped nodes and the V3 test packs (one expands into SaveImage, one into it and a PreviewImage)."""
    registry = NodeRegistry()
    registry.load_packs([PACKS], core_dir=ROOT / "comfy_nodes")
    assert not registry.failures, registry.failures
    return registry


@pytest.fixture(scope="module")
def object_info(registry: NodeRegistry) -> dict[str, Any]:
    return registry.object_info()


def _prompt() -> dict[str, Any]:
    return {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            "5": {"class_type": "V3SaveInverted", "inputs": {"images": ["1", 0], "filename_prefix": "top"}},
            "7": {"class_type": "V3SaveInvertedAndPreview", "inputs": {"images": ["1", 0]}}}


async def test_outputs_of_expanded_nodes_are_under_comfyuis_ids_with_the_graph_node_they_show_as(
        http: TestClient, services: Services, tmp_path: Path) -> None:
    async with http.ws_connect("/ws?clientId=me") as ws:
        await ws.receive_json(timeout=5)
        status, reply = await _post(http, {"prompt": _prompt(), "client_id": "me"})
        assert status == 200, reply
        prompt_id = reply["prompt_id"]
        assert await _run_all(services, tmp_path) == 1
        seen = await _messages(ws, "done")
    # ids: "5" expands into ImageInvert 5.0.1 and SaveImage 5.0.2; "7" into V3SaveInverted 7.0.1 (which expands
    # into 7.0.1.0.1 and SaveImage 7.0.1.0.2) and PreviewImage 7.0.2
    executed = {m["data"]["node"]: m["data"] for m in seen if m["type"] == "executed"}
    assert {node: data["display_node"] for node, data in executed.items()} == {
        "5.0.2": "5", "7.0.1.0.2": "7", "7.0.2": "7"}
    assert executed["5.0.2"]["output"]["images"][0]["filename"].startswith("top")
    assert executed["7.0.1.0.2"]["output"]["images"][0]["filename"].startswith("nested")
    assert executed["7.0.2"]["output"]["images"][0]["type"] == "temp"
    executing = [m["data"] for m in seen if m["type"] == "executing" and m["data"]["node"] is not None]
    assert all(m["display_node"] in ("1", "5", "7") for m in executing)

    entry = (await (await http.get(f"/history/{prompt_id}")).json())[prompt_id]
    assert set(entry["outputs"]) == {"5.0.2", "7.0.1.0.2", "7.0.2"}
    assert entry["outputs"]["7.0.1.0.2"] == executed["7.0.1.0.2"]["output"]
    assert entry["meta"]["7.0.1.0.2"] == {"node_id": "7.0.1.0.2", "display_node": "7", "parent_node": "7.0.1",
                                          "real_node_id": "7"}
    assert entry["meta"]["5.0.2"] == {"node_id": "5.0.2", "display_node": "5", "parent_node": "5",
                                      "real_node_id": "5"}
    [image] = entry["outputs"]["5.0.2"]["images"]
    view = await http.get("/view", params=image)
    assert view.status == 200 and (await view.read()).startswith(b"\x89PNG")

    [task] = (await (await http.get("/vapi/tasks")).json())["tasks"]
    assert task["status"] == "finished" and "7.0.1.0.2" in task["timings"]
    assert {o["node_id"] for o in task["outputs"]} == {"5.0.2", "7.0.1.0.2"}

