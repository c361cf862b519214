"""Bad flow sources are refused with a message naming what is wrong and where."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.flows.helpers import metadata_node, node
from visionatrix.errors import InvalidFlow
from visionatrix.flows import detect_format, load_flow


def _error(source: object, object_info: dict | None = None, **kwargs: object) -> str:
    with pytest.raises(InvalidFlow) as caught:
        load_flow(source, object_info or {}, **kwargs)  # type: ignore[arg-type]
    return caught.value.message


def test_missing_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    assert _error(missing) == f"flow file not found: {missing}"


def test_a_folder_is_not_a_flow_file(tmp_path: Path) -> None:
    assert _error(tmp_path) == f"not a file: {tmp_path}"


def test_malformed_json_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "1": {"class_type": "X",\n  "inputs": {}\n}\n')
    message = _error(path)
    assert message.startswith(f"{path}: not valid JSON:")
    assert "line 5 column 1" in message


def test_a_file_over_the_size_limit_is_refused_before_reading(tmp_path: Path, monkeypatch) -> None:
    from visionatrix.flows.importers import source

    monkeypatch.setattr(source, "MAX_FLOW_BYTES", 100)
    path = tmp_path / "huge.json"
    path.write_text(json.dumps({"1": {"class_type": "X", "inputs": {"text": "x" * 200}}}))
    assert "over the limit of 100 bytes" in _error(path)


def test_json_nested_too_deeply_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text("[" * 100000 + "]" * 100000)
    assert _error(path) == f"{path}: JSON nested too deeply"


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.json"
    path.write_text("  \n")
    assert _error(path) == f"{path}: the file is empty"


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin.json"
    path.write_bytes(b'{"a": "\xe9"}')
    assert "not UTF-8 text" in _error(path)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([1, 2], "not a flow: expected a JSON object, got list"),
        ({}, "not a flow: got an empty object"),
        ({"prompt": "x", "other": 1}, "not a flow: got an object with keys ['other', 'prompt']"),
    ],
)
def test_data_that_is_not_a_graph_is_refused(data: object, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps(data))
    assert expected in _error(path)


def test_source_that_is_neither_path_nor_mapping_is_refused() -> None:
    assert _error(12345) == "cannot load a flow from a int; give a path or a JSON object"


def test_node_without_class_type_is_named() -> None:
    graph = {"1": metadata_node(), "2": {"inputs": {}}}
    assert _error(graph) == "flow: node '2' has no class_type"


def test_node_that_is_not_an_object_is_named() -> None:
    graph = {"1": metadata_node(), "2": {"class_type": "X", "inputs": []}}
    assert _error(graph) == "flow: node '2' (X) has inputs that are not an object"


def test_link_to_a_missing_node_is_named() -> None:
    graph = {"1": metadata_node(), "2": node("SaveImage", {"images": ["9", 0]})}
    assert _error(graph) == "flow: node '2' (SaveImage) input 'images' links to missing node '9'"


def test_graph_without_metadata_needs_a_name() -> None:
    graph = {"2": node("SaveImage", {"images": "x"})}
    assert "no VixUiWorkflowMetadata node" in _error(graph)


def test_graph_without_metadata_takes_the_given_name() -> None:
    flow = load_flow({"2": node("SaveImage", {"images": "x"})}, {}, name="My_Flow")
    assert flow.name == "my_flow"


def test_graph_without_metadata_is_named_after_its_file(tmp_path: Path) -> None:
    path = tmp_path / "plain_graph.json"
    path.write_text(json.dumps({"2": node("SaveImage", {"images": "x"})}))
    assert load_flow(path, {}).name == "plain_graph"


def test_flow_name_that_is_a_path_is_refused() -> None:
    graph = {"1": metadata_node(name="../etc/passwd")}
    assert "is not a valid flow name" in _error(graph)


def test_metadata_tags_must_be_a_json_list() -> None:
    graph = {"1": metadata_node(tags="[oops")}
    assert _error(graph).startswith("node 1 metadata 'tags': not a JSON list")


def test_metadata_of_wrong_type_is_reported_with_its_field() -> None:
    graph = {"1": metadata_node(required_memory_gb="lots")}
    message = _error(graph)
    assert message.startswith("flow: invalid flow metadata: required_memory_gb:")


def test_unsupported_class_marked_as_input_is_refused() -> None:
    graph = {"1": metadata_node(), "2": node("CLIPTextEncode", {"text": "x"}, title="input;Prompt")}
    message = _error(graph)
    assert message.startswith("node 2 (CLIPTextEncode) is marked as an input, but only these classes can be:")
    assert "LoadImage" in message


def test_unknown_vixui_class_is_refused() -> None:
    graph = {"1": metadata_node(), "2": node("VixUiSomethingNew", {"x": 1})}
    assert "node 2 (VixUiSomethingNew) is marked as an input" in _error(graph)


def test_mask_without_source_image_is_refused() -> None:
    graph = {"1": metadata_node(), "2": node("LoadImage", {"image": ""}, title="input;Mask;mask")}
    assert _error(graph) == "node 2 (LoadImage): a mask input needs source_input_name=<image param>"


def test_bad_order_in_title_is_refused() -> None:
    graph = {"1": metadata_node(), "2": node("LoadImage", {"image": ""}, title="input;Img;order=first")}
    assert _error(graph) == "node 2 title 'input;Img;order=first': order: 'first' is not a whole number"


def test_list_with_bad_possible_values_is_refused() -> None:
    inputs = {"default_value": "a", "possible_values": "[a, b]", "custom_id": "pick"}
    graph = {"1": metadata_node(), "2": node("VixUiList", inputs)}
    assert _error(graph).startswith("node 2 (VixUiList) possible_values: not valid JSON")


def test_vixui_node_without_its_value_input_is_refused() -> None:
    graph = {"1": metadata_node(), "2": node("VixUiPrompt", {"custom_id": "prompt"})}
    assert _error(graph) == "node 2 (VixUiPrompt) has no 'text' input to hold the parameter value"


def test_two_nodes_with_the_same_parameter_name_are_refused() -> None:
    graph = {
        "1": metadata_node(),
        "2": node("VixUiPrompt", {"text": "", "custom_id": "prompt"}),
        "3": node("VixUiPrompt", {"text": "", "custom_id": "prompt"}),
    }
    assert _error(graph) == "nodes 2 and 3 both define the parameter 'prompt'"


def test_range_with_min_above_max_is_refused() -> None:
    inputs = {"value": 5, "min": 10, "max": 1, "step": 1, "custom_id": "steps"}
    graph = {"1": metadata_node(), "2": node("VixUiRangeInt", inputs)}
    assert "min 10.0 is greater than max 1.0" in _error(graph)


def test_bad_catalog_regex_is_refused() -> None:
    graph = {"1": metadata_node()}
    catalog = {"Broken": {"regexes": [{"input_value": "(unclosed"}]}}
    assert _error(graph, models_catalog=catalog).startswith("models catalog entry 'Broken': bad regex")


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        ({"1": {"class_type": "X", "inputs": {}}}, "api"),
        ({"nodes": [], "links": []}, "ui"),
        ({"manifest": {}, "graph": {}}, "explicit"),
    ],
)
def test_format_is_detected_from_the_shape(data: dict, kind: str) -> None:
    assert detect_format(data) == kind
