"""Binding a run's parameters into a copy of the flow graph: coercion, checks, every problem at once."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.flows.helpers import metadata_node, node, raw_corpus_flow
from visionatrix.errors import InvalidParams
from visionatrix.flows import Flow, bind_params, load_flow
from visionatrix.flows.params import copy_json


def _problems(flow: Flow, params: dict[str, Any], files: dict[str, str] | None = None) -> dict[str, str]:
    with pytest.raises(InvalidParams) as caught:
        bind_params(flow, params, files)
    return caught.value.problems


@pytest.fixture
def sdxl() -> Flow:
    return load_flow(raw_corpus_flow("sdxl_lighting"), {})


@pytest.fixture
def supir() -> Flow:
    return load_flow(raw_corpus_flow("supir_upscaler"), {})


def test_values_are_written_into_a_copy_of_the_graph(sdxl: Flow) -> None:
    graph = bind_params(sdxl, {"prompt": "a red fox", "negative_prompt": "blurry", "batch_size": "3"})
    assert graph["16"]["inputs"]["text"] == "a red fox"
    assert graph["18"]["inputs"]["text"] == "blurry"
    assert graph["25"]["inputs"]["value"] == 3
    assert sdxl.graph["16"]["inputs"]["text"] == ""
    assert graph is not sdxl.graph


def test_parameters_not_given_keep_the_graph_defaults(sdxl: Flow) -> None:
    graph = bind_params(sdxl, {"prompt": "x"})
    assert graph["18"]["inputs"]["text"] == "ugly"
    assert graph["24"]["inputs"]["default_value"] == "8 steps"
    assert {k: v for k, v in graph.items() if k != "16"} == {k: v for k, v in sdxl.graph.items() if k != "16"}


def test_every_problem_is_reported_at_once(sdxl: Flow) -> None:
    problems = _problems(sdxl, {"colour": "red", "batch_size": 50, "steps_number": "16 steps"})
    assert problems == {
        "colour": "unknown parameter",
        "prompt": "required parameter is missing",
        "batch_size": "50 is above the maximum 10",
        "steps_number": "'16 steps' is not one of the choices: '4 steps', '8 steps'",
    }


def test_none_counts_as_not_given(sdxl: Flow) -> None:
    assert _problems(sdxl, {"prompt": None}) == {"prompt": "required parameter is missing"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [(5, 5), ("7", 7), (" 9 ", 9), (4.0, 4), ("4.0", 4)],
)
def test_whole_numbers_are_accepted_from_numbers_and_strings(sdxl: Flow, value: Any, expected: int) -> None:
    graph = bind_params(sdxl, {"prompt": "x", "batch_size": value})
    assert graph["25"]["inputs"]["value"] == expected
    assert type(graph["25"]["inputs"]["value"]) is int


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (2.5, "expected a whole number, got 2.5"),
        ("many", "expected a number, got 'many'"),
        (True, "expected a number, got True"),
        ([1], "expected a number, got [1]"),
        (0, "0 is below the minimum 1"),
        ("nan", "expected a finite number, got 'nan'"),
    ],
)
def test_bad_numbers_are_refused_with_the_reason(sdxl: Flow, value: Any, reason: str) -> None:
    assert _problems(sdxl, {"prompt": "x", "batch_size": value}) == {"batch_size": reason}


def test_float_ranges_take_numeric_strings(supir: Flow) -> None:
    graph = bind_params(supir, {"scale_factor": "1.5", "supir_control_scale": 1}, {"image_to_upscale": "in.png"})
    assert graph["120"]["inputs"]["value"] == 1.5
    assert graph["144"]["inputs"]["value"] == 1.0
    assert type(graph["144"]["inputs"]["value"]) is float


def test_range_bounds_are_checked(supir: Flow) -> None:
    problems = _problems(supir, {"scale_factor": 3.5, "supir_control_scale": 0.5}, {"image_to_upscale": "a.png"})
    assert problems == {
        "scale_factor": "3.5 is above the maximum 3",
        "supir_control_scale": "0.5 is below the minimum 0.9",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("Yes", True), ("on", True), ("1", True), (1, True), ("off", False), ("N", False), (False, False)],
)
def test_booleans_are_read_from_words(supir: Flow, value: Any, expected: bool) -> None:
    graph = bind_params(supir, {"scale_factor": 2, "in_param_138": value}, {"image_to_upscale": "a.png"})
    assert graph["138"]["inputs"]["state"] is expected


def test_unreadable_boolean_is_refused(supir: Flow) -> None:
    problems = _problems(supir, {"scale_factor": 2, "in_param_138": "maybe"}, {"image_to_upscale": "a.png"})
    assert problems == {"in_param_138": "expected a boolean (true/false, 1/0, yes/no, on/off), got 'maybe'"}


def test_mapped_list_choice_is_written_for_the_node_to_map(supir: Flow) -> None:
    graph = bind_params(supir, {"scale_factor": 2, "in_param_125": "Sharp"}, {"image_to_upscale": "a.png"})
    assert graph["125"]["inputs"]["default_value"] == "Sharp"


def test_text_takes_numbers_as_text_but_not_objects(sdxl: Flow) -> None:
    assert bind_params(sdxl, {"prompt": 42})["16"]["inputs"]["text"] == "42"
    assert _problems(sdxl, {"prompt": {"a": 1}}) == {"prompt": "expected text, got dict"}


def test_image_parameter_is_written_from_files(supir: Flow) -> None:
    graph = bind_params(supir, {"scale_factor": 2}, {"image_to_upscale": "task_1_image.png"})
    assert graph["118"]["inputs"]["image"] == "task_1_image.png"


def test_image_parameter_may_also_come_in_params(supir: Flow) -> None:
    graph = bind_params(supir, {"scale_factor": 2, "image_to_upscale": "x.png"})
    assert graph["118"]["inputs"]["image"] == "x.png"


def test_image_parameter_needs_a_file_name(supir: Flow) -> None:
    assert _problems(supir, {"scale_factor": 2}, {"image_to_upscale": " "}) == {
        "image_to_upscale": "needs a file name (a non-empty string), got ' '"
    }
    assert _problems(supir, {"scale_factor": 2}) == {"image_to_upscale": "required parameter is missing"}


def test_value_parameter_given_as_a_file_is_refused(supir: Flow) -> None:
    problems = _problems(supir, {}, {"image_to_upscale": "a.png", "scale_factor": "b.png", "bogus": "c.png"})
    assert problems == {
        "scale_factor": "is a range_scale parameter, not a file; give it as a value",
        "bogus": "unknown parameter",
    }


def test_mask_without_its_source_image_is_refused() -> None:
    flow = load_flow(
        {
            "1": metadata_node(),
            "2": node("LoadImage", {"image": ""}, "input;Photo;optional;custom_id=photo"),
            "3": node("LoadImage", {"image": ""}, "input;Mask;optional;mask;source_input_name=photo;custom_id=mask"),
        },
        {},
    )
    assert _problems(flow, {}, {"mask": "m.png"}) == {"mask": "is a mask for 'photo', which is not given"}
    graph = bind_params(flow, {}, {"mask": "m.png", "photo": "p.png"})
    assert (graph["2"]["inputs"]["image"], graph["3"]["inputs"]["image"]) == ("p.png", "m.png")


def test_missing_required_source_image_is_reported_once() -> None:
    flow = load_flow(raw_corpus_flow("colorful_xl_inpaint"), {})
    problems = _problems(flow, {"prompt": "x"}, {"mask_redraw": "m.png"})
    assert problems == {"source_image": "required parameter is missing"}


def test_seed_is_written_to_every_seed_input_when_the_flow_supports_seeds() -> None:
    flow = load_flow(raw_corpus_flow("flux1_dev"), {})
    graph = bind_params(flow, {"prompt": "x", "seed": "1234"})
    assert graph["25"]["inputs"]["noise_seed"] == 1234
    assert _problems(flow, {"prompt": "x", "seed": -1}) == {
        "seed": f"expected a whole number from 0 to {2**64 - 1}, got -1"
    }


def test_seed_is_unknown_when_the_flow_does_not_support_seeds() -> None:
    flow = load_flow({"1": metadata_node(is_seed_supported=False), "2": node("KSampler", {"seed": 1})}, {})
    assert _problems(flow, {"seed": 5}) == {"seed": "unknown parameter"}


def test_explicit_list_mapping_writes_the_mapped_value() -> None:
    data = {
        "manifest": {
            "name": "mapped",
            "inputs": [
                {
                    "name": "quality",
                    "type": "list",
                    "options": {"Fast": 10, "Best": 40},
                    "optional": True,
                    "bindings": [{"node_id": "1", "input": "steps"}, {"node_id": "2", "input": "steps"}],
                }
            ],
        },
        "graph": {"1": node("KSampler", {"steps": 20}), "2": node("KSampler", {"steps": 20})},
    }
    graph = bind_params(load_flow(data, {}), {"quality": "Best"})
    assert (graph["1"]["inputs"]["steps"], graph["2"]["inputs"]["steps"]) == (40, 40)


def test_params_must_be_a_mapping(sdxl: Flow) -> None:
    with pytest.raises(InvalidParams) as caught:
        bind_params(sdxl, ["prompt"])  # type: ignore[arg-type]
    assert caught.value.problems == {"params": "parameters and files must be given as mappings of name -> value"}


def test_copy_json_copies_every_level_and_falls_back_for_other_values():
    marker = object()
    source = {"1": {"inputs": {"text": "a", "link": ["2", 0], "n": 1.5, "flag": True, "none": None}},
              "odd": (1, [2]), "obj": marker}
    copied = copy_json(source)
    assert {k: v for k, v in copied.items() if k != "obj"} == {k: v for k, v in source.items() if k != "obj"}
    copied["1"]["inputs"]["link"][0] = "9"
    copied["1"]["inputs"]["text"] = "b"
    copied["odd"][1].append(3)
    assert source["1"]["inputs"] == {"text": "a", "link": ["2", 0], "n": 1.5, "flag": True, "none": None}
    assert source["odd"] == (1, [2])  # a tuple (not JSON) is deep-copied the general way
    assert copied["obj"] is not marker
