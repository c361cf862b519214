"""Deriving a manifest from Visionatrix markers in an API graph: titles, VixUi nodes, metadata, outputs."""

from __future__ import annotations

import json
from typing import Any

from tests.unit.flows.helpers import metadata_node, node
from visionatrix.flows import load_flow
from visionatrix.flows.importers.titles import parse_title


def _flow(extra: dict[str, Any], object_info: dict[str, Any] | None = None):
    return load_flow({"1": metadata_node(), **extra}, object_info or {})


def test_title_parts_are_trimmed_and_attributes_read_lower_case() -> None:
    parsed = parse_title("input; My Image ; Optional ;ADVANCED; order=3 ;Custom_ID=Face;source_input_name=Src")
    assert parsed.display_name == "My Image"
    assert parsed.flags == {"optional", "advanced"}
    assert parsed.values == {"order": "3", "custom_id": "face", "source_input_name": "src"}


def test_title_input_takes_every_attribute() -> None:
    flow = _flow({"7": node("LoadImage", {"image": ""}, "input;Face;optional;advanced;order=4;custom_id=face")})
    (param,) = flow.manifest.inputs
    assert (param.name, param.type, param.display_name) == ("face", "image", "Face")
    assert (param.optional, param.advanced, param.order, param.hidden) == (True, True, 4, False)
    assert [(b.node_id, b.input) for b in param.bindings] == [("7", "image")]


def test_title_input_without_custom_id_is_named_after_its_node() -> None:
    flow = _flow({"12": node("LoadImage", {"image": ""}, "input;Picture")})
    (param,) = flow.manifest.inputs
    assert (param.name, param.order, param.optional) == ("in_param_12", 99, False)


def test_title_first_value_of_a_repeated_key_wins() -> None:
    flow = _flow({"3": node("LoadImage", {"image": ""}, "input;A;custom_id=first;custom_id=second")})
    assert flow.manifest.inputs[0].name == "first"


def test_vixui_empty_custom_id_is_named_after_its_node() -> None:
    inputs = {"state": True, "display_name": "Flag", "custom_id": "", "optional": True}
    flow = _flow({"410": node("VixUiCheckbox", inputs)})
    (param,) = flow.manifest.inputs
    assert (param.name, param.type, param.default, param.order) == ("in_param_410", "bool", True, 99)


def test_vixui_attributes_default_like_visionatrix() -> None:
    flow = _flow({"5": node("VixUiPrompt", {"text": "hi"})})
    (param,) = flow.manifest.inputs
    assert (param.name, param.display_name, param.optional, param.advanced, param.hidden, param.translatable) == (
        "in_param_5",
        "",
        False,
        False,
        False,
        False,
    )


def test_params_are_sorted_by_order_keeping_graph_order_for_ties() -> None:
    flow = _flow(
        {
            "2": node("VixUiPrompt", {"text": "", "custom_id": "late", "order": 50}),
            "3": node("VixUiPrompt", {"text": "", "custom_id": "tie_a", "order": 5}),
            "4": node("VixUiPrompt", {"text": "", "custom_id": "tie_b", "order": 5}),
            "5": node("LoadImage", {"image": ""}, "input;Img;order=1;custom_id=img"),
        }
    )
    assert [p.name for p in flow.manifest.inputs] == ["img", "tie_a", "tie_b", "late"]


def test_hidden_and_translatable_flags_are_kept() -> None:
    flow = _flow({"2": node("VixUiPrompt", {"text": "", "custom_id": "p", "hidden": True, "translatable": True})})
    assert (flow.manifest.inputs[0].hidden, flow.manifest.inputs[0].translatable) == (True, True)


def test_list_logic_options_from_json_list() -> None:
    inputs = {"default_value": "Two", "possible_values": '["One", "Two"]', "custom_id": "passes"}
    param = _flow({"2": node("VixUiListLogic", inputs)}).manifest.inputs[0]
    assert (param.type, param.default, param.options, param.node_maps_choice) == (
        "list",
        "Two",
        {"One": "One", "Two": "Two"},
        True,
    )


def test_linked_value_has_no_default() -> None:
    flow = _flow(
        {
            "2": node("PrimitiveString", {"value": "x"}),
            "3": node("VixUiPrompt", {"text": ["2", 0], "custom_id": "p"}),
        }
    )
    assert flow.manifest.inputs[0].default is None


def test_metadata_fields_are_read_and_json_lists_decoded() -> None:
    meta = metadata_node(
        name="My_Flow",
        display_name="My Flow",
        description="does things",
        author="me",
        tags='["x", "y"]',
        requires='["Ollama: gemma"]',
        is_seed_supported=True,
        is_count_supported=False,
        required_memory_gb=12,
        remote_vae=True,
    )
    manifest = load_flow({"1": meta}, {}).manifest
    assert (manifest.name, manifest.display_name, manifest.description, manifest.author) == (
        "my_flow",
        "My Flow",
        "does things",
        "me",
    )
    assert (manifest.tags, manifest.requires) == (["x", "y"], ["Ollama: gemma"])
    assert (manifest.is_seed_supported, manifest.is_count_supported, manifest.required_memory_gb) == (True, False, 12)


def test_wf_meta_title_node_holds_metadata_as_json() -> None:
    text = json.dumps({"name": "from_text", "display_name": "From Text", "tags": ["t"], "version": "2.0.0"})
    graph = {"1": node("Text Multiline (Code Compatible)", {"text": text}, "WF_META")}
    manifest = load_flow(graph, {}).manifest
    assert (manifest.name, manifest.display_name, manifest.tags, manifest.version) == (
        "from_text",
        "From Text",
        ["t"],
        "2.0.0",
    )


def test_sub_flows_are_read_from_wf_subflows() -> None:
    text = json.dumps([{"display_name": "Redraw", "type": "image-inpaint"}])
    flow = _flow({"9": node("PrimitiveStringMultiline", {"value": text}, "WF_SUBFLOWS")})
    assert flow.manifest.sub_flows == [{"display_name": "Redraw", "type": "image-inpaint"}]


def test_outputs_include_known_savers_and_output_nodes_of_object_info() -> None:
    object_info = {"MyPreview": {"input": {"required": {"images": ["IMAGE", {}]}}, "output_node": True}}
    flow = _flow(
        {
            "2": node("SaveImage", {"images": "x"}, "Save"),
            "3": node("SaveAudio", {"audio": "x"}),
            "4": node("MyPreview", {"images": "x"}),
            "5": node("ImageScale", {}),
        },
        object_info,
    )
    assert [(o.node_id, o.class_type, o.type) for o in flow.manifest.outputs] == [
        ("2", "SaveImage", "image"),
        ("3", "SaveAudio", "audio"),
        ("4", "MyPreview", "image"),
    ]
    assert flow.manifest.outputs[0].title == "Save"


def test_missing_node_types_lists_classes_object_info_lacks() -> None:
    flow = _flow({"2": node("KnownNode", {}), "3": node("UnknownNode", {})}, {"KnownNode": {"input": {}}})
    assert flow.missing_node_types == ["UnknownNode", "VixUiWorkflowMetadata"]
    assert flow.manifest.node_types == ["KnownNode", "UnknownNode", "VixUiWorkflowMetadata"]


def test_input_dict_passed_in_is_not_shared_with_the_flow() -> None:
    graph = {"1": metadata_node(), "2": node("VixUiPrompt", {"text": "a", "custom_id": "p"})}
    flow = load_flow(graph, {})
    graph["2"]["inputs"]["text"] = "changed"
    assert flow.graph["2"]["inputs"]["text"] == "a"


def test_info_reports_inputs_outputs_models_and_missing_types() -> None:
    flow = _flow(
        {
            "2": node("VixUiRangeInt", {"value": 20, "min": 1, "max": 50, "step": 1, "custom_id": "steps"}),
            "3": node("CheckpointLoaderSimple", {"ckpt_name": "model.safetensors"}),
            "4": node("SaveImage", {"images": ["3", 0]}),
        }
    )
    info = flow.info()
    assert json.loads(json.dumps(info)) == info
    assert (info["name"], info["display_name"], info["version"]) == ("test_flow", "Test Flow", "1.0.0")
    assert info["inputs"] == [
        {
            "name": "steps",
            "type": "range",
            "display_name": "",
            "optional": False,
            "advanced": False,
            "hidden": False,
            "order": 99,
            "default": 20,
            "min": 1.0,
            "max": 50.0,
            "step": 1.0,
            "integer": True,
            "translatable": False,
            "dynamic_lora": False,
        }
    ]
    assert info["outputs"] == [{"node_id": "4", "class_type": "SaveImage", "type": "image", "title": ""}]
    assert info["models"] == [
        {
            "name": "model.safetensors",
            "node_id": "3",
            "input": "ckpt_name",
            "value": "model.safetensors",
            "in_catalog": False,
            "types": [],
            "gated": False,
        }
    ]
    assert info["missing_node_types"] == [
        "CheckpointLoaderSimple",
        "SaveImage",
        "VixUiRangeInt",
        "VixUiWorkflowMetadata",
    ]
