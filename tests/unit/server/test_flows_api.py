"""``/vapi/flows``: list, show, upload (JSON or multipart file) and delete, through the public client."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.unit.server.helpers import ROOT
from visionatrix.client import VixClient, VixClientError
from visionatrix.server.services import SERVICES


def solid_flow(name: str = "solid") -> dict:
    """An explicit-manifest flow with no image input: an empty image of a given width, saved."""
    return {
        "manifest": {
            "name": name,
            "display_name": "Solid colour",
            "version": "1.0.0",
            "inputs": [
                {"name": "width", "type": "number", "integer": True, "optional": True,
                 "bindings": [{"node_id": "1", "input": "width"}]},
                {"name": "mood", "type": "list", "options": ["calm", "loud"], "optional": True,
                 "bindings": [{"node_id": "3", "input": "filename_prefix"}]},
            ],
        },
        "graph": {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "calm"}},
        },
    }


async def test_the_bundled_flows_are_listed_with_their_inputs(vix: VixClient) -> None:
    flows = {flow["name"]: flow for flow in await vix.list_flows()}
    assert {path.stem for path in (ROOT / "flows").glob("*.json")} <= set(flows)
    web = flows["web_resize_sharpen"]
    assert web["bundled"] is True
    assert [i["name"] for i in web["inputs"]] == ["image", "width", "sharpness"]
    assert web["missing_node_types"] == []


async def test_one_flow_is_shown_by_name(vix: VixClient) -> None:
    flow = await vix.get_flow("web_resize_sharpen")
    assert flow["display_name"] == "Resize and sharpen for the web"
    assert flow["outputs"][0]["node_id"] == "7"


async def test_an_unknown_flow_is_404(vix: VixClient) -> None:
    with pytest.raises(VixClientError) as caught:
        await vix.get_flow("no_such_flow")
    assert (caught.value.status, caught.value.error) == (404, "not_found")
    assert caught.value.details == {"kind": "flow", "id": "no_such_flow"}


async def test_a_flow_uploaded_as_json_is_listed_and_can_be_deleted(vix: VixClient) -> None:
    created = await vix.upload_flow(solid_flow())
    assert created["name"] == "solid" and created["bundled"] is False
    assert "solid" in [flow["name"] for flow in await vix.list_flows()]
    await vix.delete_flow("solid")
    with pytest.raises(VixClientError) as caught:
        await vix.get_flow("solid")
    assert caught.value.status == 404


async def test_a_flow_uploaded_as_a_file_is_imported(vix: VixClient, tmp_path: Path) -> None:
    path = tmp_path / "solid.json"
    path.write_text(json.dumps(solid_flow("from_file")))
    assert (await vix.upload_flow(path))["name"] == "from_file"
    assert (await vix.upload_flow(json.dumps(solid_flow("from_bytes")).encode()))["name"] == "from_bytes"
    assert (await vix.get_flow("from_file"))["inputs"][0]["name"] == "width"


async def test_an_unnamed_graph_is_named_by_the_query_or_the_file_name(vix: VixClient, tmp_path: Path) -> None:
    graph = solid_flow()["graph"]
    with pytest.raises(VixClientError) as caught:
        await vix.upload_flow(graph)
    assert caught.value.error == "invalid_flow"
    assert (await vix.upload_flow(graph, name="by_query"))["name"] == "by_query"
    path = tmp_path / "by_file_name.json"
    path.write_text(json.dumps(graph))
    assert (await vix.upload_flow(path))["name"] == "by_file_name"


async def test_replacing_a_bundled_flow_is_a_conflict(vix: VixClient) -> None:
    with pytest.raises(VixClientError) as caught:
        await vix.upload_flow(solid_flow("web_resize_sharpen"))
    assert (caught.value.status, caught.value.error) == (409, "conflict")
    assert (await vix.get_flow("web_resize_sharpen"))["bundled"] is True


async def test_a_bundled_flow_is_uninstalled_by_delete_and_installed_again(vix: VixClient, server) -> None:
    events = server.app[SERVICES].events.subscribe()
    await vix.delete_flow("web_resize_sharpen")
    assert "web_resize_sharpen" not in [flow["name"] for flow in await vix.list_flows()]
    with pytest.raises(VixClientError) as caught:
        await vix.get_flow("web_resize_sharpen")
    assert caught.value.status == 404
    with pytest.raises(VixClientError) as caught:
        await vix.create_task("web_resize_sharpen", {"width": 64})
    assert caught.value.status == 404
    bundled = {flow["name"]: flow for flow in await vix.list_bundled_flows()}
    assert bundled["web_resize_sharpen"]["installed"] is False and bundled["pencil_sketch"]["installed"] is True
    assert bundled["web_resize_sharpen"]["bundled"] is True

    flow = await vix.install_bundled_flow("web_resize_sharpen")
    assert flow["name"] == "web_resize_sharpen" and flow["bundled"] is True
    assert "web_resize_sharpen" in [flow["name"] for flow in await vix.list_flows()]
    changes = [await anext(events) for _ in range(2)]
    assert [(e["type"], e["change"], e["flow"]) for e in changes] == [
        ("flows_changed", "uninstalled", "web_resize_sharpen"), ("flows_changed", "installed", "web_resize_sharpen")]
    await events.aclose()


async def test_installing_an_unknown_bundled_flow_and_deleting_an_unknown_flow_are_404(vix: VixClient) -> None:
    await vix.upload_flow(solid_flow("solid"))
    for name in ("solid", "no_such_flow"):
        with pytest.raises(VixClientError) as caught:
            await vix.install_bundled_flow(name)
        assert caught.value.status == 404
    with pytest.raises(VixClientError) as caught:
        await vix.delete_flow("no_such_flow")
    assert caught.value.status == 404


async def test_flows_say_which_model_files_the_server_lacks(vix: VixClient, services) -> None:
    loading = {"upscale_4x": ["4x-UltraSharp.pth", "RealESRGAN_x2plus.pth"],  # the bundled flows with model files
               "sdxl_text_to_image": ["RealVisXL_V5.0_fp16.safetensors"],
               "sdxl_image_to_image": ["RealVisXL_V5.0_fp16.safetensors"],
               "flux_text_to_image": ["flux1-dev.sft", "t5xxl_fp16.safetensors", "clip_l.safetensors",
                                      "ae.safetensors"]}
    for flow in await vix.list_flows():
        assert flow["models_missing"] == loading.get(flow["name"], []), flow["name"]
    with_model = solid_flow("with_model")
    with_model["manifest"]["models"] = [{"name": "tiny", "node_id": "1", "input": "ckpt_name",
                                         "value": "tiny.safetensors", "types": ["checkpoints"]}]
    assert (await vix.upload_flow(with_model))["models_missing"] == ["tiny.safetensors"]
    (services.models_dir / "checkpoints").mkdir(parents=True)
    (services.models_dir / "checkpoints" / "tiny.safetensors").write_bytes(b"0")
    assert (await vix.get_flow("with_model"))["models_missing"] == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"1": {"inputs": {}}}, "class_type"),
        ({"manifest": {"name": "x", "inputs": [{"name": "a", "type": "colour", "bindings": []}]},
          "graph": {"1": {"class_type": "SaveImage", "inputs": {}}}}, "manifest"),
        ({}, "not a flow"),
    ],
)
async def test_a_flow_that_does_not_import_is_400_invalid_flow(vix: VixClient, body: dict, message: str) -> None:
    with pytest.raises(VixClientError) as caught:
        await vix.upload_flow(body)
    assert (caught.value.status, caught.value.error) == (400, "invalid_flow")
    assert message in caught.value.message


async def test_malformed_json_is_400_naming_the_problem(http: TestClient) -> None:
    response = await http.post("/vapi/flows", data=b'{"1": {', headers={"Content-Type": "application/json"})
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "invalid_json"
    assert "line 1 column 8" in body["message"]


async def test_a_json_array_is_not_a_flow(http: TestClient) -> None:
    response = await http.post("/vapi/flows", json=[1, 2])
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_flow"


async def test_a_multipart_upload_without_a_file_part_is_400(http: TestClient) -> None:
    form = aiohttp.FormData()
    form.add_field("other", b"{}", filename="flow.json")
    response = await http.post("/vapi/flows", data=form)
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "invalid_request" and body["details"] == {"file": "required"}


async def test_an_unsupported_content_type_is_415(http: TestClient) -> None:
    response = await http.post("/vapi/flows", data=b"hello", headers={"Content-Type": "text/plain"})
    assert response.status == 415
    assert (await response.json())["error"] == "unsupported_media_type"


async def test_a_flows_graph_is_its_api_format_graph_with_defaults(vix: VixClient) -> None:
    graph = await vix.get_flow_graph("pencil_sketch")
    stored = json.loads((ROOT / "flows" / "pencil_sketch.json").read_text())
    assert {node_id: node["class_type"] for node_id, node in graph.items()} == \
        {node_id: node["class_type"] for node_id, node in stored.items()}
    with pytest.raises(VixClientError) as caught:
        await vix.get_flow_graph("no_such_flow")
    assert caught.value.status == 404
