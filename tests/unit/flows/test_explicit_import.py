"""Plain API graphs with an explicit manifest: validated as given, bindings checked against the graph."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.flows.helpers import node
from visionatrix.errors import InvalidFlow
from visionatrix.flows import load_flow

OBJECT_INFO = {
    "ImageBlur": {"input": {"required": {"image": ["IMAGE", {}], "radius": ["INT", {}]}}, "output": ["IMAGE"]},
}


def graph() -> dict[str, Any]:
    return {
        "1": node("LoadImage", {"image": "example.png"}),
        "2": node("ImageBlur", {"image": ["1", 0], "radius": 3}),
        "3": node("SaveImage", {"images": ["2", 0], "filename_prefix": "blur"}),
    }


def manifest(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "blur",
        "display_name": "Blur",
        "version": "0.2.0",
        "inputs": [
            {"name": "image", "type": "image", "bindings": [{"node_id": "1", "input": "image"}]},
            {
                "name": "radius",
                "type": "number",
                "integer": True,
                "min": 1,
                "max": 20,
                "default": 3,
                "optional": True,
                "bindings": [{"node_id": "2", "input": "radius"}],
            },
        ],
    }
    data.update(overrides)
    return data


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(InvalidFlow) as caught:
        load_flow(data, OBJECT_INFO)
    return caught.value.message


def test_explicit_manifest_is_taken_as_given_with_node_types_and_outputs_derived() -> None:
    flow = load_flow({"manifest": manifest(), "graph": graph()}, OBJECT_INFO)
    assert (flow.name, flow.manifest.display_name, flow.manifest.version) == ("blur", "Blur", "0.2.0")
    assert [p.name for p in flow.manifest.inputs] == ["image", "radius"]
    assert flow.manifest.node_types == ["ImageBlur", "LoadImage", "SaveImage"]
    assert [(o.node_id, o.type) for o in flow.manifest.outputs] == [("3", "image")]
    assert flow.missing_node_types == ["LoadImage", "SaveImage"]


def test_declared_outputs_are_kept() -> None:
    data = manifest(outputs=[{"node_id": "2", "class_type": "ImageBlur", "type": "image"}])
    flow = load_flow({"manifest": data, "graph": graph()}, OBJECT_INFO)
    assert [o.node_id for o in flow.manifest.outputs] == ["2"]


def test_list_options_given_as_a_list_become_an_identity_mapping() -> None:
    inputs = [
        {
            "name": "mode",
            "type": "list",
            "options": ["a", "b"],
            "bindings": [{"node_id": "3", "input": "filename_prefix"}],
        }
    ]
    flow = load_flow({"manifest": manifest(inputs=inputs), "graph": graph()}, OBJECT_INFO)
    assert flow.manifest.input("mode").options == {"a": "a", "b": "b"}


def test_pydantic_errors_become_a_readable_message_with_the_field_path() -> None:
    inputs = [{"name": "x", "type": "colour", "bindings": [{"node_id": "1", "input": "image"}]}]
    message = _error({"manifest": manifest(inputs=inputs), "graph": graph()})
    assert message.startswith("flow: invalid manifest: manifest.inputs.0.type: Input should be 'text'")


def test_missing_required_manifest_fields_are_listed() -> None:
    message = _error({"manifest": {"inputs": [{"type": "text"}]}, "graph": graph()})
    assert "manifest.name: Field required" in message
    assert "manifest.inputs.0.name: Field required" in message
    assert "manifest.inputs.0.bindings: Field required" in message


def test_unknown_manifest_field_is_refused() -> None:
    assert "manifest.colour: Extra inputs are not permitted" in _error(
        {"manifest": manifest(colour=1), "graph": graph()}
    )


def test_binding_to_a_missing_node_is_refused() -> None:
    inputs = [{"name": "x", "type": "text", "bindings": [{"node_id": "99", "input": "text"}]}]
    message = _error({"manifest": manifest(inputs=inputs), "graph": graph()})
    assert message == "flow: invalid manifest: parameter 'x' is bound to missing node '99'"


def test_binding_to_an_input_the_node_lacks_is_refused() -> None:
    inputs = [{"name": "x", "type": "number", "bindings": [{"node_id": "2", "input": "sigma"}]}]
    message = _error({"manifest": manifest(inputs=inputs), "graph": graph()})
    assert (
        message == "flow: invalid manifest: parameter 'x' is bound to node '2' (ImageBlur), which has no input 'sigma'"
    )


def test_binding_to_an_input_known_only_from_object_info_is_accepted() -> None:
    g = graph()
    del g["2"]["inputs"]["radius"]
    flow = load_flow({"manifest": manifest(), "graph": g}, OBJECT_INFO)
    assert flow.manifest.input("radius").bindings[0].input == "radius"


def test_mask_naming_an_unknown_source_is_refused() -> None:
    inputs = [
        {
            "name": "m",
            "type": "image_mask",
            "source_input_name": "nope",
            "bindings": [{"node_id": "1", "input": "image"}],
        }
    ]
    assert "names unknown source_input_name 'nope'" in _error({"manifest": manifest(inputs=inputs), "graph": graph()})


def test_path_like_flow_name_is_refused() -> None:
    assert "is not a valid flow name" in _error({"manifest": manifest(name="a/../b"), "graph": graph()})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"manifest": [], "graph": {}}, "flow: graph: the graph has no nodes"),
        ({"manifest": [], "graph": graph()}, "flow: manifest must be an object, got list"),
        ({"manifest": {}, "graph": graph(), "extra": 1}, "flow: unexpected top-level keys ['extra']"),
        ({"manifest": {}, "graph": {"1": {"inputs": {}}}}, "flow: graph: node '1' has no class_type"),
    ],
)
def test_malformed_containers_are_refused(data: dict[str, Any], message: str) -> None:
    assert _error(data).startswith(message)
