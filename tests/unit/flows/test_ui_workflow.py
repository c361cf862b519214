"""Converting ComfyUI UI-format workflows to API graphs, rule by rule (comfyui_api.md §3.3-3.4)."""

from __future__ import annotations

from typing import Any

import pytest

from visionatrix.errors import InvalidFlow
from visionatrix.flows import load_flow
from visionatrix.flows.importers.ui_workflow import convert_ui_workflow

OBJECT_INFO: dict[str, Any] = {
    "CheckpointLoaderSimple": {
        "input": {"required": {"ckpt_name": [["sd15.safetensors", "sdxl.safetensors"], {}]}},
        "output": ["MODEL", "CLIP", "VAE"],
        "display_name": "Load Checkpoint",
    },
    "KSampler": {
        "input": {
            "required": {
                "model": ["MODEL", {}],
                "seed": ["INT", {"default": 0, "control_after_generate": True}],
                "steps": ["INT", {"default": 20}],
                "cfg": ["FLOAT", {"default": 8.0}],
                "sampler_name": [["euler", "dpmpp_2m"], {}],
                "scheduler": [["normal", "karras"], {}],
                "positive": ["CONDITIONING", {}],
                "negative": ["CONDITIONING", {}],
                "latent_image": ["LATENT", {}],
                "denoise": ["FLOAT", {"default": 1.0}],
            }
        },
        "output": ["LATENT"],
        "display_name": "KSampler",
    },
    "CLIPTextEncode": {
        "input": {"required": {"text": ["STRING", {"multiline": True}], "clip": ["CLIP", {}]}},
        "output": ["CONDITIONING"],
    },
    "VAEDecode": {"input": {"required": {"samples": ["LATENT", {}], "vae": ["VAE", {}]}}, "output": ["IMAGE"]},
    "SaveImage": {
        "input": {"required": {"images": ["IMAGE", {}], "filename_prefix": ["STRING", {"default": "ComfyUI"}]}},
        "output": [],
        "output_node": True,
    },
    "LoadImage": {
        "input": {"required": {"image": [["a.png", "b.png"], {"image_upload": True}]}},
        "output": ["IMAGE", "MASK"],
    },
    "RandomNoise": {"input": {"required": {"noise_seed": ["INT", {"default": 0}]}}, "output": ["NOISE"]},
    "FixedSeed": {
        "input": {"required": {"seed": ["INT", {"control_after_generate": False}], "label": ["STRING", {}]}},
        "output": ["INT"],
    },
    "PickWithControl": {
        "input": {
            "required": {
                "choice": ["COMBO", {"options": ["a", "b", "c"], "control_after_generate": True}],
                "amount": ["INT", {}],
            }
        },
        "output": ["STRING"],
    },
    "OrderedWidgets": {
        "input": {
            "required": {"a": ["INT", {}], "b": ["FLOAT", {}]},
            "optional": {"c": ["STRING", {}], "d": ["BOOLEAN", {"default": True}]},
        },
        "input_order": {"required": ["b", "a"], "optional": ["d", "c"]},
        "output": ["INT"],
    },
    "ForcedInput": {
        "input": {"required": {"value": ["INT", {"forceInput": True}], "scale": ["FLOAT", {}]}},
        "output": ["INT"],
    },
    "ImageBlur": {
        "input": {"required": {"image": ["IMAGE", {}], "radius": ["INT", {}]}},
        "output": ["IMAGE"],
    },
    "ImageBatch": {"input": {"required": {"image1": ["IMAGE", {}], "image2": ["IMAGE", {}]}}, "output": ["IMAGE"]},
    "ListWidget": {"input": {"required": {"points": ["STRING", {}]}}, "output": ["STRING"]},
    "VixUiPrompt": {
        "input": {
            "required": {
                "text": ["STRING", {"multiline": True}],
                "display_name": ["STRING", {}],
                "optional": ["BOOLEAN", {}],
                "advanced": ["BOOLEAN", {}],
                "order": ["INT", {}],
                "custom_id": ["STRING", {}],
            },
            "optional": {"hidden": ["BOOLEAN", {}], "translatable": ["BOOLEAN", {}]},
        },
        "output": ["STRING"],
    },
}


def ui_node(
    node_id: int,
    node_type: str,
    widgets: Any = None,
    inputs: list[dict[str, Any]] | None = None,
    mode: int = 0,
    title: str | None = None,
) -> dict[str, Any]:
    result: dict[str, Any] = {"id": node_id, "type": node_type, "mode": mode, "inputs": inputs or [], "outputs": []}
    if widgets is not None:
        result["widgets_values"] = widgets
    if title is not None:
        result["title"] = title
    return result


def slot(name: str, socket_type: str, link: int | None, widget: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = {"name": name, "type": socket_type, "link": link}
    if widget:
        result["widget"] = {"name": name}
    return result


def txt2img() -> dict[str, Any]:
    """A classic text-to-image workflow (schema 0.4 link arrays)."""
    return {
        "version": 0.4,
        "nodes": [
            ui_node(4, "CheckpointLoaderSimple", ["sd15.safetensors"]),
            ui_node(6, "CLIPTextEncode", ["a cat"], [slot("clip", "CLIP", 3)], title="Positive"),
            ui_node(7, "CLIPTextEncode", ["blurry"], [slot("clip", "CLIP", 4)]),
            ui_node(
                3,
                "KSampler",
                [42, "randomize", 20, 7.5, "euler", "normal", 1.0],
                [
                    slot("model", "MODEL", 1),
                    slot("positive", "CONDITIONING", 5),
                    slot("negative", "CONDITIONING", 6),
                    slot("latent_image", "LATENT", None),
                    slot("seed", "INT", None, widget=True),
                ],
            ),
            ui_node(8, "VAEDecode", None, [slot("samples", "LATENT", 7), slot("vae", "VAE", 8)]),
            ui_node(9, "SaveImage", ["out"], [slot("images", "IMAGE", 9)]),
            ui_node(20, "Note", ["remember to set the prompt"]),
            ui_node(21, "MarkdownNote", ["# notes"]),
        ],
        "links": [
            [1, 4, 0, 3, 0, "MODEL"],
            [3, 4, 1, 6, 0, "CLIP"],
            [4, 4, 1, 7, 0, "CLIP"],
            [5, 6, 0, 3, 1, "CONDITIONING"],
            [6, 7, 0, 3, 2, "CONDITIONING"],
            [7, 3, 0, 8, 0, "LATENT"],
            [8, 4, 2, 8, 1, "VAE"],
            [9, 8, 0, 9, 0, "IMAGE"],
        ],
    }


def convert(workflow: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    result = convert_ui_workflow(workflow, OBJECT_INFO)
    return result.graph, result.warnings


def test_txt2img_converts_to_the_api_graph_the_frontend_would_send() -> None:
    graph, warnings = convert(txt2img())
    assert graph == {
        "4": {
            "class_type": "CheckpointLoaderSimple",
            "inputs": {"ckpt_name": "sd15.safetensors"},
            "_meta": {"title": "Load Checkpoint"},
        },
        "6": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "a cat", "clip": ["4", 1]},
            "_meta": {"title": "Positive"},
        },
        "7": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "blurry", "clip": ["4", 1]},
            "_meta": {"title": "CLIPTextEncode"},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 42,
                "steps": 20,
                "cfg": 7.5,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
            },
            "_meta": {"title": "KSampler"},
        },
        "8": {
            "class_type": "VAEDecode",
            "inputs": {"samples": ["3", 0], "vae": ["4", 2]},
            "_meta": {"title": "VAEDecode"},
        },
        "9": {
            "class_type": "SaveImage",
            "inputs": {"filename_prefix": "out", "images": ["8", 0]},
            "_meta": {"title": "SaveImage"},
        },
    }
    assert warnings == []


def test_widgets_follow_input_order_required_then_optional() -> None:
    graph, _ = convert({"nodes": [ui_node(1, "OrderedWidgets", [0.5, 3, False, "text"])], "links": []})
    assert graph["1"]["inputs"] == {"b": 0.5, "a": 3, "d": False, "c": "text"}


def test_int_named_noise_seed_has_a_control_value_after_it() -> None:
    graph, warnings = convert({"nodes": [ui_node(1, "RandomNoise", [123, "fixed"])], "links": []})
    assert graph["1"]["inputs"] == {"noise_seed": 123}
    assert warnings == []


def test_seed_with_control_explicitly_off_has_no_control_value() -> None:
    graph, warnings = convert({"nodes": [ui_node(1, "FixedSeed", [7, "label"])], "links": []})
    assert graph["1"]["inputs"] == {"seed": 7, "label": "label"}
    assert warnings == []


def test_combo_with_control_has_one_control_value_in_the_modern_frontend() -> None:
    graph, _ = convert({"nodes": [ui_node(1, "PickWithControl", ["b", "increment", 5])], "links": []})
    assert graph["1"]["inputs"] == {"choice": "b", "amount": 5}


def test_combo_with_control_has_control_and_filter_values_in_the_classic_frontend() -> None:
    graph, _ = convert({"nodes": [ui_node(1, "PickWithControl", ["b", "increment", "", 5])], "links": []})
    assert graph["1"]["inputs"] == {"choice": "b", "amount": 5}


def test_combo_with_image_upload_skips_the_upload_button_value() -> None:
    workflow = {
        "nodes": [
            ui_node(1, "LoadImage", ["cat.png", "image"], title="input;Picture;custom_id=picture"),
            ui_node(2, "ImageBlur", [3], [slot("image", "IMAGE", 1)]),
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"]],
    }
    graph, warnings = convert(workflow)
    assert graph["1"]["inputs"] == {"image": "cat.png"}
    assert graph["2"]["inputs"] == {"image": ["1", 0], "radius": 3}
    assert warnings == []


def test_linked_widget_keeps_its_slot_and_the_link_wins() -> None:
    workflow = txt2img()
    workflow["nodes"].append(ui_node(30, "FixedSeed", [999, "s"]))
    sampler = next(n for n in workflow["nodes"] if n["id"] == 3)
    sampler["inputs"][-1]["link"] = 40
    workflow["links"].append([40, 30, 0, 3, 4, "INT"])
    graph, _ = convert(workflow)
    assert graph["3"]["inputs"]["seed"] == ["30", 0]
    assert graph["3"]["inputs"]["steps"] == 20
    assert graph["3"]["inputs"]["denoise"] == 1.0


def test_force_input_creates_a_socket_not_a_widget_slot() -> None:
    workflow = {
        "nodes": [
            ui_node(1, "FixedSeed", [5, "x"]),
            ui_node(2, "ForcedInput", [1.5], [slot("value", "INT", 1)]),
        ],
        "links": [[1, 1, 0, 2, 0, "INT"]],
    }
    graph, _ = convert(workflow)
    assert graph["2"]["inputs"] == {"scale": 1.5, "value": ["1", 0]}


def test_primitive_node_value_goes_to_every_target_input() -> None:
    workflow = {
        "nodes": [
            ui_node(1, "PrimitiveNode", [77, "fixed"]),
            ui_node(2, "ImageBlur", [3], [slot("image", "IMAGE", None), slot("radius", "INT", 1, widget=True)]),
            ui_node(3, "ImageBlur", [4], [slot("image", "IMAGE", None), slot("radius", "INT", 2, widget=True)]),
        ],
        "links": [[1, 1, 0, 2, 1, "INT"], [2, 1, 0, 3, 1, "INT"]],
    }
    graph, _ = convert(workflow)
    assert "1" not in graph
    assert graph["2"]["inputs"]["radius"] == 77
    assert graph["3"]["inputs"]["radius"] == 77


def test_reroute_chains_are_followed_to_the_real_source() -> None:
    workflow = {
        "nodes": [
            ui_node(1, "LoadImage", ["a.png", "image"]),
            ui_node(2, "Reroute", None, [slot("", "*", 1)]),
            ui_node(3, "Reroute", None, [slot("", "*", 2)]),
            ui_node(4, "ImageBlur", [1], [slot("image", "IMAGE", 3)]),
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "*"], [3, 3, 0, 4, 0, "IMAGE"]],
    }
    graph, _ = convert(workflow)
    assert sorted(graph) == ["1", "4"]
    assert graph["4"]["inputs"]["image"] == ["1", 0]


def test_muted_node_is_dropped_and_links_to_it_removed() -> None:
    workflow = {
        "nodes": [
            ui_node(1, "LoadImage", ["a.png", "image"]),
            ui_node(2, "ImageBlur", [2], [slot("image", "IMAGE", 1)], mode=2),
            ui_node(3, "ImageBatch", None, [slot("image1", "IMAGE", 2), slot("image2", "IMAGE", 3)]),
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"], [3, 1, 0, 3, 1, "IMAGE"]],
    }
    graph, _ = convert(workflow)
    assert sorted(graph) == ["1", "3"]
    assert graph["3"]["inputs"] == {"image2": ["1", 0]}


def test_bypassed_node_forwards_its_input_of_matching_type() -> None:
    workflow = {
        "nodes": [
            ui_node(1, "LoadImage", ["a.png", "image"]),
            ui_node(2, "ImageBlur", [2], [slot("image", "IMAGE", 1), slot("radius", "INT", None, widget=True)], mode=4),
            ui_node(3, "SaveImage", ["x"], [slot("images", "IMAGE", 2)]),
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]],
    }
    graph, _ = convert(workflow)
    assert sorted(graph) == ["1", "3"]
    assert graph["3"]["inputs"]["images"] == ["1", 0]


def test_bypassed_node_prefers_the_input_at_the_same_slot_index() -> None:
    workflow = {
        "nodes": [
            ui_node(1, "LoadImage", ["a.png", "image"]),
            ui_node(2, "LoadImage", ["b.png", "image"]),
            ui_node(3, "Splitter", None, [slot("first", "IMAGE", 1), slot("second", "IMAGE", 2)], mode=4),
            ui_node(4, "SaveImage", ["x"], [slot("images", "IMAGE", 3)]),
        ],
        "links": [[1, 1, 0, 3, 0, "IMAGE"], [2, 2, 0, 3, 1, "IMAGE"], [3, 3, 1, 4, 0, "IMAGE"]],
    }
    graph, _ = convert(workflow)
    assert graph["4"]["inputs"]["images"] == ["2", 0]


def test_bypassed_node_without_matching_input_leaves_the_input_unconnected() -> None:
    workflow = {
        "nodes": [
            ui_node(1, "CheckpointLoaderSimple", ["sd15.safetensors"]),
            ui_node(2, "VAEDecode", None, [slot("samples", "LATENT", None), slot("vae", "VAE", 1)], mode=4),
            ui_node(3, "SaveImage", ["x"], [slot("images", "IMAGE", 2)]),
        ],
        "links": [[1, 1, 2, 2, 1, "VAE"], [2, 2, 0, 3, 0, "IMAGE"]],
    }
    graph, _ = convert(workflow)
    assert graph["3"]["inputs"] == {"filename_prefix": "x"}


def test_schema_1_link_objects_are_read() -> None:
    workflow = txt2img()
    workflow["links"] = [
        {
            "id": link[0],
            "origin_id": link[1],
            "origin_slot": link[2],
            "target_id": link[3],
            "target_slot": link[4],
            "type": link[5],
        }
        for link in workflow["links"]
    ]
    assert convert(workflow)[0] == convert(txt2img())[0]


def test_unknown_node_with_dict_widgets_keeps_them_by_name() -> None:
    workflow = {"nodes": [ui_node(1, "CustomThing", {"alpha": 1, "beta": "x"})], "links": []}
    graph, warnings = convert(workflow)
    assert graph["1"]["inputs"] == {"alpha": 1, "beta": "x"}
    assert warnings == []


def test_unknown_node_with_list_widgets_is_reported() -> None:
    workflow = {
        "nodes": [
            ui_node(1, "LoadImage", ["a.png", "image"]),
            ui_node(2, "CustomThing", [1, 2], [slot("image", "IMAGE", 1)]),
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"]],
    }
    graph, warnings = convert(workflow)
    assert graph["2"]["inputs"] == {"image": ["1", 0]}
    assert warnings == ["node 2 (CustomThing): unknown node type, its widget values could not be mapped to inputs"]
    flow = load_flow(workflow, OBJECT_INFO, name="custom")
    assert flow.missing_node_types == ["CustomThing"]
    assert flow.warnings == warnings


def test_array_widget_values_are_wrapped_so_they_are_not_links() -> None:
    graph, _ = convert({"nodes": [ui_node(1, "ListWidget", [["a", 1]])], "links": []})
    assert graph["1"]["inputs"] == {"points": {"__value__": ["a", 1]}}


def test_missing_widget_values_use_defaults_and_extra_values_are_reported() -> None:
    graph, warnings = convert({"nodes": [ui_node(1, "SaveImage", [])], "links": []})
    assert graph["1"]["inputs"] == {"filename_prefix": "ComfyUI"}
    assert warnings == ["node 1 (SaveImage): no widget value for 'filename_prefix', using its default"]
    graph, warnings = convert({"nodes": [ui_node(1, "SaveImage", ["a", "b"])], "links": []})
    assert graph["1"]["inputs"] == {"filename_prefix": "a"}
    assert warnings == ["node 1 (SaveImage): 1 widget value(s) more than object_info describes were ignored"]


def test_input_titles_and_vixui_nodes_of_a_ui_workflow_become_params() -> None:
    workflow = txt2img()
    workflow["nodes"].append(ui_node(50, "VixUiPrompt", ["night", "Negative", True, True, 15, "negative", False, True]))
    workflow["nodes"].append(ui_node(51, "LoadImage", ["a.png", "image"], title="input;Style;optional;custom_id=style"))
    flow = load_flow(workflow, OBJECT_INFO, name="txt2img")
    summary = [
        (p.name, p.type, p.display_name, p.optional, p.advanced, p.default, p.order) for p in flow.manifest.inputs
    ]
    assert summary == [
        ("negative", "text", "Negative", True, True, "night", 15),
        ("style", "image", "Style", True, False, None, 99),
    ]
    assert [(b.node_id, b.input) for b in flow.manifest.input("style").bindings] == [("51", "image")]
    assert flow.manifest.input("negative").translatable is True
    assert [(o.node_id, o.type) for o in flow.manifest.outputs] == [("9", "image")]


@pytest.mark.parametrize(
    ("workflow", "message"),
    [
        ({"nodes": [{"type": "X"}], "links": []}, "workflow: node #0 is not an object with an 'id'"),
        ({"nodes": [{"id": 1}], "links": []}, "workflow: node 1 has no type"),
        ({"nodes": [], "links": [[1, 2]]}, "workflow: link #0 is malformed: [1, 2]"),
        ({"nodes": [], "links": {"a": 1}}, "workflow: 'links' must be a list, got dict"),
        ({"nodes": [{"id": 1, "type": "A"}, {"id": 1, "type": "B"}], "links": []}, "workflow: node id 1 is used twice"),
        (
            {"nodes": [{"id": 1, "type": "workflow>Upscale"}], "links": []},
            "workflow: node 1 is a legacy group node (workflow>Upscale); convert it to a subgraph in the editor first",
        ),
    ],
)
def test_malformed_workflows_are_refused_with_the_reason(workflow: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidFlow) as caught:
        convert(workflow)
    assert caught.value.message == message


def test_workflow_of_only_notes_is_not_a_graph() -> None:
    with pytest.raises(InvalidFlow, match="the graph has no nodes"):
        load_flow({"nodes": [ui_node(1, "Note", ["x"])], "links": []}, OBJECT_INFO, name="notes")
