"""The VixUi node pack: form values pass through, switches pick (and only request) one branch, lists map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import comfy_nodes.image_io
import comfy_nodes.primitives
import comfy_nodes.vix_ui
from comfy_nodes.vix_ui import (
    VixCheckboxLogic,
    VixDictionaryGet,
    VixDictionaryNew,
    VixUiAspectRatioSelector,
    VixUiCheckbox,
    VixUiCheckboxLogic,
    VixUiList,
    VixUiListLogic,
    VixUiPrompt,
    VixUiRangeFloat,
    VixUiRangeInt,
    VixUiRangeScaleFloat,
    VixUiWorkflowMetadata,
)
from tests.corpus import VIXFLOWS
from visionatrix.errors import InvalidInput

FLOWS_DIR = VIXFLOWS
UI = {"display_name": "X", "optional": True, "advanced": False, "order": 1, "custom_id": "x"}
STEPS = json.dumps(["4 steps", "8 steps", "16 steps"])


def test_prompt_outputs_the_submitted_text():
    assert VixUiPrompt().run(text="a red fox", **UI, hidden=False, translatable=True) == ("a red fox",)


def test_range_int_outputs_the_value():
    assert VixUiRangeInt().run(value=28, min=25, max=40, step=1, **UI) == (28,)


def test_range_float_keeps_the_value_unrounded():
    (value,) = VixUiRangeFloat().run(value=0.123456789, min=0.0, max=1.0, step=0.01, **UI)
    assert value == 0.123456789


def test_range_float_spec_disables_rounding_so_the_frontend_keeps_every_digit():
    value_spec = VixUiRangeFloat.INPUT_TYPES()["required"]["value"]
    assert value_spec[0] == "FLOAT" and value_spec[1]["round"] is False


def test_range_scale_float_declares_the_source_image_input_and_outputs_the_factor():
    required = VixUiRangeScaleFloat.INPUT_TYPES()["required"]
    assert list(required)[:5] == ["value", "display_name", "optional", "advanced", "source_input_name"]
    (value,) = VixUiRangeScaleFloat().run(value=2.5, source_input_name="image", min=1.1, max=3.0, step=0.1, **UI)
    assert value == 2.5


def test_checkbox_outputs_state_as_bool_and_int():
    assert VixUiCheckbox().run(state=True, **UI) == (True, 1)
    assert VixUiCheckbox().run(state=False, **UI) == (False, 0)


def test_checkbox_reads_submitted_text_flags_as_visionatrix_does():
    assert VixUiCheckbox().run(state="yes", **UI) == (True, 1)
    assert VixUiCheckbox().run(state="false", **UI) == (False, 0)


@pytest.mark.parametrize("node_class", [VixUiCheckboxLogic, VixCheckboxLogic])
def test_checkbox_logic_requests_only_the_on_branch_when_checked(node_class):
    node = node_class()
    assert node.check_lazy_status(state=True, input_off_state=None, input_on_state=None) == ["input_on_state"]


@pytest.mark.parametrize("node_class", [VixUiCheckboxLogic, VixCheckboxLogic])
def test_checkbox_logic_requests_only_the_off_branch_when_unchecked(node_class):
    node = node_class()
    assert node.check_lazy_status(state=False, input_off_state=None, input_on_state=None) == ["input_off_state"]


@pytest.mark.parametrize("node_class", [VixUiCheckboxLogic, VixCheckboxLogic])
def test_checkbox_logic_requests_nothing_once_the_chosen_branch_is_evaluated(node_class):
    assert node_class().check_lazy_status(state=True, input_off_state=None, input_on_state="on") == []


@pytest.mark.parametrize("node_class", [VixUiCheckboxLogic, VixCheckboxLogic])
def test_checkbox_logic_outputs_the_branch_chosen_by_state(node_class):
    node = node_class()
    assert node.run(state=True, input_off_state="off", input_on_state="on") == ("on",)
    assert node.run(state=False, input_off_state="off", input_on_state="on") == ("off",)


def test_checkbox_logic_branches_are_lazy_any_type_inputs():
    ui_optional = VixUiCheckboxLogic.INPUT_TYPES()["optional"]
    logic_required = VixCheckboxLogic.INPUT_TYPES()["required"]
    for spec in (ui_optional["input_on_state"], logic_required["input_off_state"]):
        assert spec == ("*", {"lazy": True})
    assert VixCheckboxLogic.CATEGORY == "Visionatrix/Logic"


def test_list_outputs_the_chosen_value_of_a_plain_list():
    assert VixUiList().run(default_value="boy", possible_values='["girl", "boy"]', **UI) == ("boy",)


def test_list_maps_a_chosen_key_of_a_dict_to_its_value():
    possible = json.dumps({"Soft": "TiledRestoreEDMSampler", "Sharp": "TiledRestoreDPMPP2MSampler"})
    assert VixUiList().run(default_value="Sharp", possible_values=possible, **UI) == ("TiledRestoreDPMPP2MSampler",)


def test_list_passes_a_value_that_is_not_a_dict_key_through_unchanged():
    possible = json.dumps({"Soft": "TiledRestoreEDMSampler"})
    assert VixUiList().run(default_value="RestoreEDMSampler", possible_values=possible, **UI) == ("RestoreEDMSampler",)


def test_list_with_malformed_possible_values_names_that_input():
    with pytest.raises(InvalidInput) as caught:
        VixUiList().run(default_value="a", possible_values="[a, b", **UI)
    assert caught.value.input_name == "possible_values"


def test_list_logic_requests_the_input_at_the_chosen_position():
    node = VixUiListLogic()
    assert node.check_lazy_status(default_value="4 steps", possible_values=STEPS) == ["input_first"]
    assert node.check_lazy_status(default_value="16 steps", possible_values=STEPS) == ["input_third"]


def test_list_logic_requests_nothing_once_the_chosen_input_is_evaluated():
    node = VixUiListLogic()
    assert node.check_lazy_status(default_value="8 steps", possible_values=STEPS, input_second="model") == []


def test_list_logic_outputs_the_input_at_the_chosen_position():
    branches = {"input_first": "one", "input_second": "two", "input_third": "three"}
    assert VixUiListLogic().run(default_value="8 steps", possible_values=STEPS, **branches, **UI) == ("two",)


def test_list_logic_refuses_a_value_missing_from_the_list_naming_default_value():
    with pytest.raises(InvalidInput) as caught:
        VixUiListLogic().check_lazy_status(default_value="2 steps", possible_values=STEPS)
    assert caught.value.input_name == "default_value"
    assert "2 steps" in str(caught.value)


def test_list_logic_refuses_a_seventh_choice_as_it_has_six_inputs():
    possible = json.dumps([str(n) for n in range(7)])
    with pytest.raises(InvalidInput, match="at most 6"):
        VixUiListLogic().check_lazy_status(default_value="6", possible_values=possible)


def test_list_logic_reports_an_unconnected_chosen_branch():
    with pytest.raises(InvalidInput) as caught:
        VixUiListLogic().run(default_value="8 steps", possible_values=STEPS, input_first="one", **UI)
    assert caught.value.input_name == "input_second"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("1:1 (1024x1024)", ("1:1", 1024, 1024)), ("21:9 (1536x640)", ("21:9", 1536, 640))],
)
def test_aspect_ratio_selector_outputs_ratio_width_and_height(choice, expected):
    assert VixUiAspectRatioSelector().run(aspect_ratio=choice, **UI) == expected


def test_aspect_ratio_selector_offers_fourteen_sizes_and_defaults_to_order_20():
    required = VixUiAspectRatioSelector.INPUT_TYPES()["required"]
    assert len(required["aspect_ratio"][0]) == 14
    assert required["order"][1]["default"] == 20
    assert required["custom_id"][1]["default"] == "aspect_ratio"


def test_aspect_ratio_selector_refuses_an_unknown_size():
    with pytest.raises(InvalidInput) as caught:
        VixUiAspectRatioSelector().run(aspect_ratio="7:3 (2100x900)", **UI)
    assert caught.value.input_name == "aspect_ratio"


def test_workflow_metadata_outputs_its_fields_as_json_and_is_not_an_output_node():
    (text,) = VixUiWorkflowMetadata().run(name="flux", display_name="Flux", version="1.0.0", required_memory_gb=12.0)
    assert json.loads(text) == {"name": "flux", "display_name": "Flux", "version": "1.0.0", "required_memory_gb": 12.0}
    assert VixUiWorkflowMetadata.OUTPUT_NODE is False


def test_dictionary_new_skips_pairs_with_an_empty_key_and_get_falls_back_to_the_default():
    (mapping,) = VixDictionaryNew().run(key_1="Cinematic", value_1="film {prompt}", key_2="", value_2="lost")
    assert mapping == {"Cinematic": "film {prompt}"}
    assert VixDictionaryGet().run(dictionary=mapping, key="Cinematic", default_value="") == ("film {prompt}",)
    assert VixDictionaryGet().run(dictionary=mapping, key="Lowpoly", default_value="plain") == ("plain",)


def _corpus_flows() -> list[Path]:
    return sorted(FLOWS_DIR.glob("*.json"))


def _our_nodes() -> dict[str, type]:
    packs = (comfy_nodes.vix_ui, comfy_nodes.primitives, comfy_nodes.image_io)
    return {name: cls for pack in packs for name, cls in pack.NODE_CLASS_MAPPINGS.items()}


def _constant_problem(spec: tuple, value: object) -> str | None:
    kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
    if isinstance(value, list):  # a link [node_id, output_index]
        return None
    if isinstance(kind, list):
        return None if value in kind or value == "" else f"{value!r} not in combo"
    accepted = {"INT": (int,), "FLOAT": (int, float), "STRING": (str,), "BOOLEAN": (bool,)}.get(kind)
    if accepted and (not isinstance(value, accepted) or (kind != "BOOLEAN" and isinstance(value, bool))):
        return f"{value!r} is not {kind}"
    if ("min" in options and value < options["min"]) or ("max" in options and value > options["max"]):
        return f"{value!r} outside [{options.get('min')}, {options.get('max')}]"
    return None


def _node_problems(class_type: str, inputs: dict, node_class: type) -> list[str]:
    declared = node_class.INPUT_TYPES()
    specs = {**declared.get("required", {}), **declared.get("optional", {})}
    problems = [f"missing {name}" for name in declared.get("required", {}) if name not in inputs]
    for name, value in inputs.items():
        if name not in specs:
            if not (class_type == "LoadImage" and name == "upload"):  # frontend widget state, ignored by ComfyUI
                problems.append(f"unknown input {name}")
            continue
        problem = _constant_problem(specs[name], value)
        if problem:
            problems.append(f"{name}: {problem}")
    return problems


def test_every_published_flow_fits_the_declared_inputs_of_our_nodes():
    nodes, problems, checked = _our_nodes(), [], 0
    for flow_path in _corpus_flows():
        for node_id, node in json.loads(flow_path.read_text()).items():
            node_class = nodes.get(node.get("class_type"))
            if node_class is None:
                continue
            checked += 1
            found = _node_problems(node["class_type"], node["inputs"], node_class)
            problems += [f"{flow_path.name} node {node_id} ({node['class_type']}): {p}" for p in found]
    assert checked > 400
    assert problems == []


def test_every_vixui_class_used_by_a_published_flow_is_provided():
    used = {node.get("class_type") for path in _corpus_flows() for node in json.loads(path.read_text()).values()}
    vix_used = {name for name in used if name.startswith("VixUi")}
    assert vix_used
    assert vix_used - set(comfy_nodes.vix_ui.NODE_CLASS_MAPPINGS) == set()
