"""Node expansion: a node returning ``{"expand": subgraph, "result": ...}`` runs the subgraph in its place."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
import torch

import comfy_nodes.image_ops as image_ops
from tests.unit.executor import fake_nodes
from visionatrix.errors import NodeFailed
from visionatrix.executor import events
from visionatrix.executor.run import Executor, ExecutorSettings
from visionatrix.nodes.v3.graph_utils import GraphBuilder

RUNS: Counter[str] = Counter()


class Gradient:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 100})}}

    def run(self, seed: int) -> tuple[torch.Tensor]:
        RUNS["Gradient"] += 1
        return (torch.arange(4 * 6 * 3, dtype=torch.float32).reshape(1, 4, 6, 3).add(seed) / 100,)


class InvertFlip:
    """Expands into ImageInvert -> ImageFlip (built with GraphBuilder, the image passed as a constant)."""

    RETURN_TYPES = ("IMAGE", "INT")
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",)}, "optional": {"flip_method": ("STRING", {})}}

    def run(self, image: Any, flip_method: str = "x-axis: vertically") -> dict[str, Any]:
        RUNS["InvertFlip"] += 1
        graph = GraphBuilder()
        inverted = graph.node("ImageInvert", image=image)
        flipped = graph.node("ImageFlip", image=inverted.out(0), flip_method=flip_method)
        return {"result": (flipped.out(0), 7), "expand": graph.finalize()}


class Twice:
    """Nested expansion: expands into InvertFlip (which expands in turn) and then ImageInvert, by hand-written ids."""

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",)}}

    def run(self, image: Any) -> dict[str, Any]:
        flip = "y-axis: horizontally"
        subgraph = {"a": {"class_type": "InvertFlip", "inputs": {"image": image, "flip_method": flip}},
                    "b": {"class_type": "ImageInvert", "inputs": {"image": ["a", 0]}}}
        return {"result": (["b", 0],), "expand": subgraph}


class ExpandInto:
    """Expands into one node of ``class_type`` fed ``value`` (a failing node, an unknown type, itself...)."""

    RETURN_TYPES = ("INT",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"class_type": ("STRING", {})}, "optional": {"value": ("INT", {})}}

    def run(self, class_type: str, value: int = 1) -> dict[str, Any]:
        inputs = {"class_type": class_type, "value": value} if class_type == "ExpandInto" else {"value": value}
        return {"result": (["x", 0],), "expand": {"x": {"class_type": class_type, "inputs": inputs}}}


@pytest.fixture
def executor(tmp_path):
    RUNS.clear()
    fake_nodes.CALLS.clear()
    registry = fake_nodes.make_registry()
    registry.register_mappings(image_ops.NODE_CLASS_MAPPINGS, None, python_module="comfy_nodes.image_ops",
                               pack="image_ops", core=True)
    registry.register_mappings({c.__name__: c for c in (Gradient, InvertFlip, Twice, ExpandInto)}, None,
                               python_module="tests.expansion", pack="expansion")
    ex = Executor(registry, ExecutorSettings(device="cpu", output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp",
                                             input_dir=tmp_path / "in"))
    yield ex
    ex.close()


def _chain(last: dict[str, Any]) -> dict[str, Any]:
    return {"1": {"class_type": "Gradient", "inputs": {"seed": 3}}, "2": last,
            "9": {"class_type": "Collect", "inputs": {"value": ["2", 0]}}}


async def _image(executor: Executor, prompt: dict[str, Any], **kwargs: Any) -> torch.Tensor:
    await executor.execute(prompt, **kwargs)
    return fake_nodes.Collect.received[-1]["value"]


async def test_expansion_equals_running_the_chain_directly(executor):
    fake_nodes.Collect.received = []
    seen: list[events.Event] = []
    expanded = await _image(executor, _chain({"class_type": "InvertFlip", "inputs": {"image": ["1", 0]}}),
                            on_event=seen.append)
    direct = await _image(executor, {
        "1": {"class_type": "Gradient", "inputs": {"seed": 3}},
        "3": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "2": {"class_type": "ImageFlip", "inputs": {"image": ["3", 0], "flip_method": "x-axis: vertically"}},
        "9": {"class_type": "Collect", "inputs": {"value": ["2", 0]}}})
    assert torch.equal(expanded, direct)
    source = torch.arange(72, dtype=torch.float32).reshape(1, 4, 6, 3).add(3) / 100
    assert torch.allclose(expanded, (1 - source).flip(1))
    finished = [e.node_id for e in seen if isinstance(e, events.NodeFinished)]
    assert finished == ["1", "2.0.1", "2.0.2", "2", "9"]  # subgraph ids namespaced by the expanding node


async def test_a_constant_in_result_is_passed_as_it_is(executor):
    fake_nodes.Collect.received = []
    prompt = {"1": {"class_type": "Gradient", "inputs": {"seed": 0}},
              "2": {"class_type": "InvertFlip", "inputs": {"image": ["1", 0]}},
              "9": {"class_type": "Collect", "inputs": {"value": ["2", 1]}}}
    await executor.execute(prompt)
    assert fake_nodes.Collect.received[-1]["value"] == 7


async def test_nested_expansion(executor):
    fake_nodes.Collect.received = []
    seen: list[events.Event] = []
    nested = await _image(executor, _chain({"class_type": "Twice", "inputs": {"image": ["1", 0]}}),
                          on_event=seen.append)
    source = torch.arange(72, dtype=torch.float32).reshape(1, 4, 6, 3).add(3) / 100
    assert torch.allclose(nested, 1 - (1 - source).flip(2))
    finished = [e.node_id for e in seen if isinstance(e, events.NodeFinished)]
    assert finished == ["1", "2.0.a.0.1", "2.0.a.0.2", "2.0.a", "2.0.b", "2", "9"]


async def test_rerun_takes_the_expanded_node_from_the_cache_and_a_change_expands_again(executor):
    prompt = _chain({"class_type": "InvertFlip", "inputs": {"image": ["1", 0]}})
    first = await executor.execute(prompt)
    assert RUNS == {"Gradient": 1, "InvertFlip": 1}
    again = await executor.execute(prompt)
    assert RUNS == {"Gradient": 1, "InvertFlip": 1}
    assert set(again.cached) == {"2"} and again.executed == ["9"]
    prompt["2"]["inputs"]["flip_method"] = "y-axis: horizontally"
    third = await executor.execute(prompt)
    assert RUNS == {"Gradient": 1, "InvertFlip": 2}
    # subgraph nodes fed a tensor constant cannot be compared between runs, so they run again; the source is cached
    assert third.executed == ["2.0.1", "2.0.2", "2", "9"] and third.cached == ["1"]
    assert first.executed == ["1", "2.0.1", "2.0.2", "2", "9"]


async def test_subgraph_nodes_with_plain_constants_are_cached_by_signature(executor):
    prompt = {"1": {"class_type": "ExpandInto", "inputs": {"class_type": "Number", "value": 5}},
              "9": {"class_type": "Collect", "inputs": {"value": ["1", 0]}}}
    await executor.execute(prompt)
    assert fake_nodes.CALLS["Number"] == 1 and fake_nodes.Collect.received[-1]["value"] == 5
    # the same Number outside any expansion has the subgraph node's signature: it comes from the cache
    result = await executor.execute({"2": {"class_type": "Number", "inputs": {"value": 5}},
                                     "8": {"class_type": "Collect", "inputs": {"value": ["2", 0]}}})
    assert fake_nodes.CALLS["Number"] == 1 and result.cached == ["2"]


async def test_an_error_inside_the_subgraph_is_reported_against_the_expanding_node(executor):
    seen: list[events.Event] = []
    prompt = {"1": {"class_type": "ExpandInto", "inputs": {"class_type": "Boom"}},
              "9": {"class_type": "Collect", "inputs": {"value": ["1", 0]}}}
    with pytest.raises(NodeFailed) as failed:
        await executor.execute(prompt, on_event=seen.append)
    await asyncio.sleep(0)
    assert (failed.value.node_id, failed.value.class_type) == ("1", "ExpandInto")
    assert "1.0.x (Boom)" in str(failed.value) and "exploded on purpose" in str(failed.value)
    failures = [e for e in seen if isinstance(e, events.ExecutionFailed)]
    assert failures and failures[0].node_id == "1" and "exploded on purpose" in failures[0].traceback


@pytest.mark.parametrize(("class_type", "message"), [
    ("NoSuchNode", "unknown node type 'NoSuchNode'"),
    ("ExpandInto", "nested deeper than 32"),
])
async def test_a_bad_expansion_fails_the_expanding_node_with_a_clear_message(executor, class_type, message):
    prompt = {"1": {"class_type": "ExpandInto", "inputs": {"class_type": class_type}},
              "9": {"class_type": "Collect", "inputs": {"value": ["1", 0]}}}
    with pytest.raises(NodeFailed) as failed:
        await executor.execute(prompt)
    assert failed.value.node_id == "1" and message in str(failed.value)


async def test_a_subgraph_link_to_a_node_that_has_not_run_is_refused(executor):
    class Dangling(ExpandInto):
        def run(self, class_type: str, value: int = 1) -> dict[str, Any]:
            return {"result": (["x", 0],), "expand": {"x": {"class_type": "Add", "inputs": {"a": ["9", 0]}}}}

    executor.registry.register("Dangling", Dangling)
    prompt = {"1": {"class_type": "Dangling", "inputs": {"class_type": ""}},
              "9": {"class_type": "Collect", "inputs": {"value": ["1", 0]}}}
    with pytest.raises(NodeFailed, match="links to node 9, which is not in the subgraph and has not run"):
        await executor.execute(prompt)


async def test_nodes_made_by_expansion_show_as_the_graphs_node_that_expanded(executor):
    """ComfyUI's ``display_node``: a subgraph node shows as the node that expanded, followed up to the graph's own
    node for nested expansions; the worker reports that node as the task's current node."""
    from visionatrix.worker.progress import ProgressTracker

    seen: list[events.Event] = []
    tracker = ProgressTracker()
    currents: list[str | None] = []

    def both(event: events.Event) -> None:
        seen.append(event)
        tracker(event)
        currents.append(tracker.current_node)

    result = await executor.execute(_chain({"class_type": "Twice", "inputs": {"image": ["1", 0]}}), on_event=both)
    await asyncio.sleep(0)
    started = {e.node_id: e.display_node_id for e in seen if isinstance(e, events.NodeStarted)}
    assert started == {"1": "1", "2": "2", "2.0.a": "2", "2.0.a.0.1": "2", "2.0.a.0.2": "2", "2.0.b": "2", "9": "9"}
    finished = {e.node_id: e.display_node_id for e in seen if isinstance(e, events.NodeFinished)}
    assert finished == started
    assert result.parents == {"2.0.a": "2", "2.0.b": "2", "2.0.a.0.1": "2.0.a", "2.0.a.0.2": "2.0.a"}
    assert set(result.display.values()) == {"2"}
    assert set(currents) == {None, "1", "2", "9"}  # never a subgraph id


async def test_override_display_id_names_the_node_a_subgraph_node_shows_as(executor):
    class Shown(ExpandInto):
        def run(self, class_type: str, value: int = 1) -> dict[str, Any]:
            subgraph = {"x": {"class_type": "Number", "inputs": {"value": value}, "override_display_id": "9"}}
            return {"result": (["x", 0],), "expand": subgraph}

    executor.registry.register("Shown", Shown)
    seen: list[events.Event] = []
    prompt = {"1": {"class_type": "Shown", "inputs": {"class_type": "", "value": 41}},
              "9": {"class_type": "Collect", "inputs": {"value": ["1", 0]}}}
    result = await executor.execute(prompt, on_event=seen.append)
    await asyncio.sleep(0)
    started = {e.node_id: e.display_node_id for e in seen if isinstance(e, events.NodeStarted)}
    assert started["1.0.x"] == "9" and result.display == {"1.0.x": "9"} and result.parents == {"1.0.x": "1"}
