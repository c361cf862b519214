from __future__ import annotations

import pytest

from visionatrix.errors import InvalidGraph
from visionatrix.executor.validation import validate


def errors_of(result, node_id):
    return [e["type"] for e in result.node_errors[node_id]["errors"]]


def test_valid_prompt_has_no_errors_and_lists_its_outputs(registry):
    prompt = {"1": {"class_type": "Number", "inputs": {"value": 3}},
              "2": {"class_type": "Collect", "inputs": {"value": ["1", 0]}}}
    result = validate(prompt, registry)
    assert result.ok
    assert result.outputs == ["2"]


def test_every_problem_is_reported_at_once(registry):
    prompt = {
        "1": {"class_type": "Number", "inputs": {"value": 500}},
        "2": {"class_type": "Choice", "inputs": {"mode": "medium", "text": "x", "ratio": "abc", "flag": True}},
        "3": {"class_type": "Add", "inputs": {"a": ["1", 0]}},
        "4": {"class_type": "Add", "inputs": {"a": ["99", 0], "b": ["1", 3]}},
        "5": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": 1}},
        "6": {"class_type": "Nope", "inputs": {}, "_meta": {"title": "Mystery"}},
        "7": {"class_type": "Collect", "inputs": {"value": ["3", 0]}},
        "8": {"class_type": "Collect", "inputs": {"value": ["4", 0]}},
        "9": {"class_type": "Collect", "inputs": {"value": ["5", 0]}},
    }
    result = validate(prompt, registry)
    assert not result.ok
    assert errors_of(result, "1") == ["value_bigger_than_max"]
    assert sorted(errors_of(result, "2")) == ["invalid_input_type", "value_not_in_list"]
    assert errors_of(result, "3") == ["required_input_missing"]
    assert errors_of(result, "4") == ["bad_linked_input", "bad_linked_input"]
    assert errors_of(result, "5") == ["return_type_mismatch"]
    assert errors_of(result, "6") == ["missing_node_type"]
    assert result.error["type"] == "missing_node_type"
    assert result.node_errors["1"]["dependent_outputs"] == ["7", "8"]
    assert result.node_errors["2"]["class_type"] == "Choice"
    with pytest.raises(InvalidGraph) as info:
        result.raise_for_errors()
    lines = info.value.issue_lines()
    assert any("node 1 (Number) input 'value'" in line and "bigger than max" in line for line in lines)
    assert any("node 4 (Add) input 'a'" in line and "does not exist" in line for line in lines)
    assert len(lines) == 8


def test_downstream_nodes_of_a_broken_node_are_not_listed(registry):
    prompt = {"1": {"class_type": "Number", "inputs": {"value": -500}},
              "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 2}},
              "3": {"class_type": "Collect", "inputs": {"value": ["2", 0]}}}
    result = validate(prompt, registry)
    assert list(result.node_errors) == ["1"]
    assert errors_of(result, "1") == ["value_smaller_than_min"]
    assert result.outputs == []
    assert result.error["type"] == "prompt_outputs_failed_validation"


def test_cycles_are_reported(registry):
    prompt = {"1": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": 1}},
              "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 1}},
              "3": {"class_type": "Collect", "inputs": {"value": ["2", 0]}}}
    result = validate(prompt, registry)
    cycle_errors = [e for entry in result.node_errors.values() for e in entry["errors"]]
    assert [e["type"] for e in cycle_errors] == ["dependency_cycle"]
    assert set(cycle_errors[0]["extra_info"]["cycle_nodes"]) == {"1", "2"}


def test_a_prompt_without_output_nodes_is_refused(registry):
    result = validate({"1": {"class_type": "Number", "inputs": {"value": 1}}}, registry)
    assert result.error["type"] == "prompt_no_outputs"


@pytest.mark.parametrize("prompt", ["{not json", "[" * 100000, "[1, 2]", "{}", '{"1": 5}', '{"1": {"inputs": {}}}',
                                    '{"1": {"class_type": "Add", "inputs": []}}'])
def test_malformed_prompts_raise_a_readable_error(registry, prompt):
    with pytest.raises(InvalidGraph) as info:
        validate(prompt, registry)
    assert info.value.error["type"] == "invalid_prompt"
    assert info.value.issue_lines()


def test_constants_are_coerced_to_widget_types_without_touching_the_input(registry):
    prompt = {"1": {"class_type": "Choice", "inputs": {"mode": "fast", "text": 12, "ratio": "0.5", "flag": "true"}},
              "2": {"class_type": "Collect", "inputs": {"value": ["1", 0]}}}
    result = validate(prompt, registry)
    assert result.ok
    assert result.graph.node("1").inputs == {"mode": "fast", "text": "12", "ratio": 0.5, "flag": True}
    assert prompt["1"]["inputs"]["ratio"] == "0.5"


def test_validate_inputs_replaces_builtin_checks_of_its_parameters(registry):
    ok = {"1": {"class_type": "Even", "inputs": {"value": 40}},
          "2": {"class_type": "Collect", "inputs": {"value": ["1", 0]}}}
    assert validate(ok, registry).ok
    odd = {"1": {"class_type": "Even", "inputs": {"value": 3}},
           "2": {"class_type": "Collect", "inputs": {"value": ["1", 0]}}}
    result = validate(odd, registry)
    assert errors_of(result, "1") == ["custom_validation_failed"]
    assert "odd" in result.node_errors["1"]["errors"][0]["details"]


def test_a_custom_typed_input_given_a_constant_is_refused(registry):
    registry.register("NeedsImage", type("NeedsImage", (), {
        "INPUT_TYPES": classmethod(lambda cls: {"required": {"image": ("IMAGE",)}}),
        "RETURN_TYPES": (), "FUNCTION": "run", "OUTPUT_NODE": True}))
    result = validate({"1": {"class_type": "NeedsImage", "inputs": {"image": "cat.png"}}}, registry)
    assert errors_of(result, "1") == ["invalid_input_type"]


def test_targets_restrict_validation_to_the_chosen_outputs(registry):
    prompt = {"1": {"class_type": "Number", "inputs": {"value": 1000}},
              "2": {"class_type": "Collect", "inputs": {"value": ["1", 0]}},
              "3": {"class_type": "Collect", "inputs": {"value": 5}}}
    result = validate(prompt, registry, targets=["3"])
    assert result.ok and result.outputs == ["3"]
