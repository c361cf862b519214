"""Optional image parameters that are not given: their nodes go, and the graph around them stays runnable."""

from __future__ import annotations

from typing import Any

from tests.unit.flows.helpers import metadata_node, node, raw_corpus_flow
from visionatrix.flows import bind_params, load_flow
from visionatrix.flows.prune import remove_node

OBJECT_INFO: dict[str, Any] = {
    "LoadImage": {"input": {"required": {"image": [[], {"image_upload": True}]}}, "output": ["IMAGE", "MASK"]},
    "ImageBatch": {"input": {"required": {"image1": ["IMAGE", {}], "image2": ["IMAGE", {}]}}, "output": ["IMAGE"]},
    "ImageToMask": {
        "input": {"required": {"image": ["IMAGE", {}], "channel": [["red", "green"], {}]}},
        "output": ["MASK"],
    },
    "CLIPVisionEncode": {
        "input": {"required": {"clip_vision": ["CLIP_VISION", {}], "image": ["IMAGE", {}]}},
        "output": ["CLIP_VISION_OUTPUT"],
    },
    "MultiView": {
        "input": {
            "required": {"front": ["CLIP_VISION_OUTPUT", {}]},
            "optional": {"left": ["CLIP_VISION_OUTPUT", {}], "back": ["CLIP_VISION_OUTPUT", {}]},
        },
        "output": ["CONDITIONING"],
    },
    "SaveImage": {"input": {"required": {"images": ["IMAGE", {}]}}, "output": [], "output_node": True},
}


def test_optional_image_in_a_batch_is_replaced_by_the_other_image() -> None:
    flow = load_flow(raw_corpus_flow("ask_ai_internal"), OBJECT_INFO)
    graph = bind_params(flow, {"prompt": "hi"}, {"image_1": "a.png", "image_3": "c.png"})
    assert "68" not in graph and "66" not in graph
    assert graph["67"]["inputs"] == {"image1": ["65", 0], "image2": ["69", 0]}
    assert graph["65"]["inputs"]["image"] == "a.png"


def test_all_optional_images_missing_leave_the_consumer_without_images() -> None:
    flow = load_flow(raw_corpus_flow("ask_ai_internal"), OBJECT_INFO)
    graph = bind_params(flow, {"prompt": "hi"})
    assert not {"65", "66", "67", "68", "69"} & set(graph)
    assert "images" not in graph["38"]["inputs"]
    assert graph["38"]["inputs"]["prompt"] == ["46", 0]
    assert "54" in graph


def test_consumer_losing_a_required_input_is_removed_and_optional_links_downstream_dropped() -> None:
    flow = load_flow(
        {
            "1": metadata_node(),
            "2": node("CLIPVisionLoader", {"clip_name": "vision.safetensors"}),
            "3": node("LoadImage", {"image": ""}, "input;Front;custom_id=front"),
            "4": node("LoadImage", {"image": ""}, "input;Left;optional;custom_id=left"),
            "5": node("CLIPVisionEncode", {"clip_vision": ["2", 0], "image": ["3", 0]}),
            "6": node("CLIPVisionEncode", {"clip_vision": ["2", 0], "image": ["4", 0]}),
            "7": node("MultiView", {"front": ["5", 0], "left": ["6", 0]}),
        },
        OBJECT_INFO,
    )
    graph = bind_params(flow, {}, {"front": "f.png"})
    assert sorted(graph) == ["1", "2", "3", "5", "7"]
    assert graph["7"]["inputs"] == {"front": ["5", 0]}


def test_optional_mask_removes_its_converter_chain() -> None:
    flow = load_flow(raw_corpus_flow("colorful_xl_inpaint"), OBJECT_INFO)
    graph = bind_params(flow, {"prompt": "x"}, {"source_image": "s.png", "mask_redraw": "m.png"})
    assert "329" not in graph and "333" not in graph
    assert all(value != ["333", 0] for n in graph.values() for value in n["inputs"].values())


def test_given_optional_image_keeps_its_nodes() -> None:
    flow = load_flow(raw_corpus_flow("colorful_xl_inpaint"), OBJECT_INFO)
    graph = bind_params(
        flow, {"prompt": "x"}, {"source_image": "s.png", "mask_redraw": "m.png", "mask_context": "c.png"}
    )
    assert graph["329"]["inputs"]["image"] == "c.png"
    assert graph["333"]["inputs"]["image"] == ["329", 0]


def test_unknown_consumer_class_is_kept_without_the_input() -> None:
    graph = {
        "1": node("LoadImage", {"image": ""}),
        "2": node("MysteryNode", {"pic": ["1", 0], "strength": 1}),
    }
    removed = remove_node(graph, "1", OBJECT_INFO)
    assert removed == ["1"]
    assert graph == {"2": node("MysteryNode", {"strength": 1})}


def test_removal_cascades_through_every_broken_consumer() -> None:
    graph = {
        "1": node("LoadImage", {"image": ""}),
        "2": node("ImageToMask", {"image": ["1", 0], "channel": "red"}),
        "3": node("ImageBatch", {"image1": ["1", 0], "image2": ["1", 0]}),
        "4": node("SaveImage", {"images": ["3", 0]}),
    }
    removed = remove_node(graph, "1", OBJECT_INFO)
    assert removed == ["1", "2", "3", "4"]
    assert graph == {}
