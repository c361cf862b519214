from __future__ import annotations

import asyncio
import threading

import pytest

from tests.unit.executor import fake_nodes
from visionatrix.errors import Interrupted, InvalidGraph, NodeFailed
from visionatrix.executor import events


def chain(value: int = 1) -> dict:
    return {"1": {"class_type": "Number", "inputs": {"value": value}},
            "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 10}},
            "3": {"class_type": "Add", "inputs": {"a": ["2", 0], "b": 100}},
            "4": {"class_type": "Collect", "inputs": {"value": ["3", 0]}}}


async def test_runs_nodes_in_dependency_order_and_returns_output_ui(executor):
    seen: list[events.Event] = []
    result = await executor.execute(chain(), on_event=seen.append)
    await asyncio.sleep(0)
    assert result.ui == {"4": {"values": [111]}}
    assert result.executed == ["1", "2", "3", "4"]
    assert set(result.timings_s) == {"1", "2", "3", "4"}
    started = [e.node_id for e in seen if isinstance(e, events.NodeStarted)]
    assert started == ["1", "2", "3", "4"]
    assert isinstance(seen[0], events.ExecutionStarted) and seen[0].planned_nodes == 4
    assert isinstance(seen[-1], events.ExecutionFinished)


async def test_only_what_outputs_need_runs(executor):
    prompt = chain()
    prompt["9"] = {"class_type": "Boom", "inputs": {"value": 1}}
    result = await executor.execute(prompt)
    assert "9" not in result.executed


async def test_rerun_with_one_changed_value_recomputes_only_downstream_nodes(executor):
    prompt = {"1": {"class_type": "Number", "inputs": {"value": 1}},
              "2": {"class_type": "Number", "inputs": {"value": 2}},
              "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 5}},
              "4": {"class_type": "Add", "inputs": {"a": ["3", 0], "b": ["2", 0]}},
              "5": {"class_type": "Collect", "inputs": {"value": ["4", 0]}}}
    first = await executor.execute(prompt)
    assert sorted(first.executed) == ["1", "2", "3", "4", "5"]
    again = await executor.execute(prompt)
    # output nodes always run (each run writes its own results); everything upstream comes from the cache
    assert again.executed == ["5"] and again.ui == {"5": {"values": [8]}}
    assert sorted(again.cached) == ["4"]
    assert fake_nodes.CALLS["Add"] == 2
    prompt["2"]["inputs"]["value"] = 20
    changed = await executor.execute(prompt)
    assert sorted(changed.executed) == ["2", "4", "5"]
    assert changed.cached == ["3"]
    assert changed.ui == {"5": {"values": [26]}}


async def test_cache_is_a_bounded_lru(registry, tmp_path):
    from visionatrix.executor.run import Executor, ExecutorSettings

    executor = Executor(registry, ExecutorSettings(device="cpu", cache_max_entries=3))
    try:
        await executor.execute(chain(1))
        assert len(executor.cache) == 3
        await executor.execute(chain(2))
        assert len(executor.cache) == 3
        result = await executor.execute(chain(1))
        assert result.executed == ["1", "2", "3", "4"]
    finally:
        executor.close()


async def test_identical_subgraphs_share_cache_entries_whatever_their_ids(executor):
    await executor.execute(chain(7))
    renamed = {f"n{k}": {**v, "inputs": {i: ([f"n{x[0]}", x[1]] if isinstance(x, list) else x)
                                         for i, x in v["inputs"].items()}} for k, v in chain(7).items()}
    result = await executor.execute(renamed)
    # Collect takes the hidden UNIQUE_ID input, so its own id is part of its signature
    assert result.executed == ["n4"]
    assert sorted(result.cached) == ["n3"]


async def test_is_changed_nan_reruns_every_time(executor):
    prompt = {"1": {"class_type": "Volatile", "inputs": {"value": 1}},
              "2": {"class_type": "Collect", "inputs": {"value": ["1", 0]}}}
    await executor.execute(prompt)
    await executor.execute(prompt)
    assert fake_nodes.CALLS["Volatile"] == 2


async def test_lazy_inputs_only_evaluate_the_chosen_branch(executor):
    prompt = {"1": {"class_type": "Number", "inputs": {"value": 4}},
              "2": {"class_type": "Boom", "inputs": {"value": 1}},
              "3": {"class_type": "Pick", "inputs": {"first": True, "on_true": ["1", 0], "on_false": ["2", 0]}},
              "4": {"class_type": "Collect", "inputs": {"value": ["3", 0]}}}
    result = await executor.execute(prompt)
    assert result.ui["4"] == {"values": [4]}
    assert "2" not in result.executed
    prompt["3"]["inputs"]["first"] = False
    with pytest.raises(NodeFailed) as info:
        await executor.execute(prompt)
    assert info.value.node_id == "2"


async def test_output_is_list_fans_out_calls_and_input_is_list_gathers_them(executor):
    prompt = {"1": {"class_type": "Spread", "inputs": {"count": 4}},
              "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 10}},
              "3": {"class_type": "Collect", "inputs": {"value": ["2", 0]}},
              "4": {"class_type": "Sum", "inputs": {"values": ["2", 0]}},
              "5": {"class_type": "Collect", "inputs": {"value": ["4", 0]}}}
    result = await executor.execute(prompt)
    assert result.ui["3"] == {"values": [10, 11, 12, 13]}
    assert result.ui["5"] == {"values": [46]}
    assert fake_nodes.CALLS["Add"] == 4


async def test_hidden_inputs_receive_prompt_unique_id_and_extra_pnginfo(executor):
    await executor.execute(chain(), extra_data={"extra_pnginfo": {"workflow": {"a": 1}}})
    received = fake_nodes.Collect.received[-1]
    assert received == {"value": 111, "unique_id": "4", "has_prompt": True, "extra_pnginfo": {"workflow": {"a": 1}}}


async def test_invalid_prompt_raises_before_anything_runs(executor):
    prompt = chain()
    prompt["1"]["inputs"]["value"] = 1000
    with pytest.raises(InvalidGraph):
        await executor.execute(prompt)
    assert fake_nodes.CALLS["Number"] == 0


async def test_node_failure_names_node_and_class_and_emits_an_event(executor):
    seen: list[events.Event] = []
    prompt = {"1": {"class_type": "Boom", "inputs": {"value": 1}},
              "2": {"class_type": "Collect", "inputs": {"value": ["1", 0]}}}
    with pytest.raises(NodeFailed) as info:
        await executor.execute(prompt, on_event=seen.append)
    await asyncio.sleep(0)
    assert (info.value.node_id, info.value.class_type) == ("1", "Boom")
    assert "exploded on purpose" in str(info.value)
    failed = [e for e in seen if isinstance(e, events.ExecutionFailed)]
    assert failed and "exploded on purpose" in failed[0].traceback


async def test_interrupt_inside_a_long_node_stops_the_run(executor):
    fake_nodes.Slow.on_third_step = executor.interrupt
    prompt = {"1": {"class_type": "Slow", "inputs": {"steps": 1000}},
              "2": {"class_type": "Collect", "inputs": {"value": ["1", 0]}}}
    seen: list[events.Event] = []
    with pytest.raises(Interrupted):
        await executor.execute(prompt, on_event=seen.append)
    await asyncio.sleep(0)
    progress = [e for e in seen if isinstance(e, events.NodeProgressed)]
    assert 3 <= len(progress) < 10
    assert any(isinstance(e, events.ExecutionInterrupted) for e in seen)
    fake_nodes.Slow.on_third_step = None
    result = await executor.execute(prompt)
    assert result.ui["2"] == {"values": [1000]}


async def test_interrupt_between_nodes_stops_before_the_next_node(executor):
    fake_nodes.Slow.on_third_step = executor.interrupt
    prompt = {"1": {"class_type": "Slow", "inputs": {"steps": 3}},
              "2": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": 1}},
              "3": {"class_type": "Collect", "inputs": {"value": ["2", 0]}}}
    with pytest.raises(Interrupted):
        await executor.execute(prompt)
    assert fake_nodes.CALLS["Add"] == 0


async def test_nodes_run_off_the_event_loop_thread(executor, registry):
    threads: list[str] = []

    class WhereAmI:
        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}

        def run(self):
            threads.append(threading.current_thread().name)
            return {}

    registry.register("WhereAmI", WhereAmI)
    await executor.execute({"1": {"class_type": "WhereAmI", "inputs": {}}})
    assert threads and threads[0].startswith("vix-cpu")


async def test_inputs_a_node_does_not_declare_are_not_passed_to_it(executor):
    prompt = chain()
    prompt["2"]["inputs"]["upload"] = "image"
    result = await executor.execute(prompt)
    assert result.ui["4"] == {"values": [111]}


async def test_a_chain_of_five_thousand_nodes_validates_and_runs_without_recursion(executor):
    prompt = {"0": {"class_type": "Number", "inputs": {"value": 0}}}
    for i in range(1, 5000):
        prompt[str(i)] = {"class_type": "Add", "inputs": {"a": [str(i - 1), 0], "b": 1}}
    prompt["out"] = {"class_type": "Collect", "inputs": {"value": ["4999", 0]}}
    result = await executor.execute(prompt)
    assert result.ui["out"] == {"values": [4999]}


def test_output_files_lists_saved_files_with_their_node_and_skips_temp_ones():
    result = events.ExecutionResult("p", ui={
        "9": {"images": [{"filename": "a_00001_.png", "subfolder": "", "type": "output"},
                         {"filename": "b.png", "subfolder": "sub", "type": "output"}]},
        "4": {"images": [{"filename": "preview.png", "subfolder": "", "type": "temp"}], "text": ["hello"]}})
    assert result.output_files() == [("9", "a_00001_.png"), ("9", "sub/b.png")]
