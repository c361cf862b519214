"""Every published Visionatrix flow imports, with the parameters Visionatrix itself derives.

The general checks recompute facts straight from each raw JSON file; the hand-written tables below were read off
the raw files by a person (node ids, titles and VixUi inputs) and pin names, types, labels, flags and defaults.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.flows.helpers import corpus_paths, raw_corpus_flow
from visionatrix.flows import load_flow
from visionatrix.flows.importers.outputs import KNOWN_OUTPUTS

ALL_FLOWS = corpus_paths()


def test_the_corpus_holds_all_52_published_flows() -> None:
    assert len(ALL_FLOWS) == 52


def _raw_input_nodes(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result = {}
    for node_id, node in raw.items():
        title = node.get("_meta", {}).get("title", "")
        if node["class_type"] == "VixUiWorkflowMetadata":
            continue
        if node["class_type"].startswith("VixUi") or title.startswith("input;") or title.startswith("lora-input;"):
            result[node_id] = node
    return result


@pytest.mark.parametrize("path", ALL_FLOWS, ids=[p.stem for p in ALL_FLOWS])
def test_published_flow_imports_with_consistent_manifest(
    path: Path, pack_object_info: dict[str, Any], models_catalog: dict[str, Any]
) -> None:
    raw = json.loads(path.read_text())
    flow = load_flow(path, pack_object_info, models_catalog=models_catalog)
    manifest = flow.manifest
    meta = next(node["inputs"] for node in raw.values() if node["class_type"] == "VixUiWorkflowMetadata")

    assert manifest.name == meta["name"].lower() == path.stem
    assert manifest.display_name == meta["display_name"]
    assert manifest.version == meta["version"]
    assert manifest.tags == json.loads(meta["tags"])
    assert manifest.required_memory_gb == meta["required_memory_gb"]
    assert manifest.node_types == sorted({node["class_type"] for node in raw.values()})
    assert flow.missing_node_types == sorted({n["class_type"] for n in raw.values()} - set(pack_object_info))
    assert flow.graph == raw

    input_nodes = _raw_input_nodes(raw)
    assert len(manifest.inputs) == len(input_nodes)
    assert len({param.name for param in manifest.inputs}) == len(manifest.inputs)
    orders = [param.order for param in manifest.inputs]
    assert orders == sorted(orders)
    for param in manifest.inputs:
        (binding,) = param.bindings
        raw_node = input_nodes[binding.node_id]
        if raw_node["class_type"].startswith("VixUi"):
            custom_id = raw_node["inputs"]["custom_id"]
            assert param.name == (custom_id or f"in_param_{binding.node_id}")
            assert param.display_name == raw_node["inputs"]["display_name"]
            assert param.optional is raw_node["inputs"]["optional"]
            assert param.advanced is raw_node["inputs"]["advanced"]
            assert param.order == raw_node["inputs"]["order"]
        if param.is_file:
            assert raw_node["class_type"] == "LoadImage" and binding.input == "image"
            assert param.default is None
        else:
            assert param.default == raw_node["inputs"][binding.input]
        if param.type == "list":
            assert str(param.default) in param.options
        if param.type == "image_mask":
            assert manifest.input(param.source_input_name).type == "image"

    assert manifest.outputs, "every published flow saves something"
    for output in manifest.outputs:
        assert raw[output.node_id]["class_type"] == output.class_type
        assert output.class_type in KNOWN_OUTPUTS or pack_object_info[output.class_type]["output_node"]

    model_inputs = {
        (node_id, name)
        for node_id, node in raw.items()
        for name, value in node["inputs"].items()
        if name in ("ckpt_name", "unet_name", "vae_name", "lora_name") and str(value).endswith(".safetensors")
    }
    assert model_inputs <= {(ref.node_id, ref.input) for ref in manifest.models}


def _summary(flow_stem: str, pack_object_info: dict[str, Any]) -> list[tuple[Any, ...]]:
    flow = load_flow(raw_corpus_flow(flow_stem), pack_object_info)
    return [
        (p.name, p.type, p.display_name, p.optional, p.advanced, p.default, p.bindings[0].node_id, p.bindings[0].input)
        for p in flow.manifest.inputs
    ]


EXPECTED: dict[str, list[tuple[Any, ...]]] = {
    "sdxl_lighting": [
        ("prompt", "text", "Prompt", False, False, "", "16", "text"),
        ("steps_number", "list", "Number of steps", True, True, "8 steps", "24", "default_value"),
        ("negative_prompt", "text", "Negative Prompt", True, True, "ugly", "18", "text"),
        ("batch_size", "range", "Batch size", True, True, 1, "25", "value"),
    ],
    "supir_upscaler": [
        ("image_to_upscale", "image", "Image to upscale", False, False, None, "118", "image"),
        ("scale_factor", "range_scale", "Output image size factor", False, True, 2, "120", "value"),
        ("steps_count", "range", "Steps number to generate", True, True, 45, "147", "value"),
        ("supir_control_scale", "range", "Strictness (High = Less Freedom)", True, True, 1, "144", "value"),
        ("in_param_117", "list", 'Diffusion Type(set to "fp32" on macOS)', True, True, "auto", "117", "default_value"),
        ("in_param_125", "list", "Scaling option", True, True, "Soft", "125", "default_value"),
        ("in_param_138", "bool", "Low memory mode", True, True, False, "138", "state"),
    ],
    "colorful_xl_inpaint": [
        ("source_image", "image", "Image to redraw", False, False, None, "327", "image"),
        ("mask_redraw", "image_mask", "Mask to redraw", False, False, None, "328", "image"),
        ("mask_context", "image_mask", "Context to include", True, False, None, "329", "image"),
        ("fast_run", "bool", "Fast Run", True, True, True, "307", "state"),
        ("prompt", "text", "Prompt", False, False, "", "309", "text"),
        ("prompt_strength", "range", "Prompt strength", True, True, 1, "308", "value"),
        ("denoise", "range", "Replacing factor", True, True, 0.5, "323", "value"),
        ("steps_count", "range", "Steps number to generate", True, True, 45, "314", "value"),
    ],
    "animal_clothing": [
        ("person_image", "image", "Person or animal", False, False, None, "82", "image"),
        ("image_of_clothes", "image", "Image of clothes", False, False, None, "81", "image"),
        ("aspect_ratio", "list", "Aspect Ratio", True, True, "2:3 (832x1216)", "93", "aspect_ratio"),
        ("diffusion_precision", "list", "Diffusion precision", True, True, "fp8_e4m3fn", "97", "default_value"),
        ("vision_provider", "bool", "Use Gemini for vision instead of Ollama", True, True, False, "86", "state"),
    ],
    "comicu_portrait": [
        ("person_face", "image", "Person's face", False, False, None, "393", "image"),
        ("person_pose", "image", "Person's face pose", True, True, None, "394", "image"),
        ("in_param_396", "list", "Base gender", False, False, "girl", "396", "default_value"),
        ("prompt", "text", "Prompt", True, True, "", "400", "text"),
        ("prompt_strength", "range", "Prompt strength", True, True, 7, "392", "value"),
        ("in_param_410", "bool", "Simplified Detailing", True, True, False, "410", "state"),
        ("simplest_lora_strenth", "range", "Simplify Style effect strength", True, True, 0.5, "408", "value"),
    ],
    "photomaker_2": [
        ("person_face1", "image", "Person's face", False, False, None, "32", "image"),
        ("person_face2", "image", "Person's face", False, False, None, "33", "image"),
        ("person_face3", "image", "Person's face", True, False, None, "240", "image"),
        ("person_face4", "image", "Person's face", True, False, None, "241", "image"),
        ("prompt", "text", "Prompt", False, False, "portrait of a girl", "226", "text"),
        ("in_param_235", "list", "PhotoMaker Style", True, True, "Photographic (Default)", "235", "default_value"),
        (
            "negative_prompt",
            "text",
            "Negative Prompt",
            True,
            True,
            "asymmetry, worst quality, low quality, illustration, 3d, 2d, painting, cartoons, sketch, open mouth",
            "228",
            "text",
        ),
        ("accuracy", "range", "Freedom of outcome", True, True, 0.2, "227", "value"),
    ],
    "animagine_xl": [
        (
            "prompt",
            "text",
            "Prompt",
            False,
            False,
            "1girl, elfen lied, pug, throne, night, masterpiece, high score, great score, absurdres",
            "277",
            "text",
        ),
        (
            "negative_prompt",
            "text",
            "Negative Prompt",
            True,
            True,
            "lowres, bad anatomy, bad hands, text, error, missing finger, extra digits, fewer digits, cropped, "
            "worst quality, low quality, low score, bad score, average score, signature, watermark, username, blurry",
            "278",
            "text",
        ),
        ("aspect_ratio", "list", "Aspect Ratio", True, True, "1:1 (1024x1024)", "284", "aspect_ratio"),
        ("steps_count", "range", "Steps number to generate", True, True, 28, "282", "value"),
        ("prompt_strength", "range", "Prompt strength", True, True, 4.5, "280", "value"),
    ],
    "flux1_dev": [
        ("prompt", "text", "Prompt", False, False, "", "31", "text"),
        ("aspect_ratio", "list", "Aspect Ratio", True, True, "1:1 (1024x1024)", "40", "aspect_ratio"),
        ("diffusion_precision", "list", "Diffusion precision", True, True, "fp8_e4m3fn", "41", "default_value"),
        ("loras_in_param_39", "range", "Realism LoRa strength", True, True, 1, "39", "strength_model"),
        ("steps_count", "range", "Steps number to generate", True, True, 25, "34", "value"),
        ("batch_size", "range", "Batch size", True, True, 1, "37", "value"),
    ],
}


@pytest.mark.parametrize("flow_stem", sorted(EXPECTED))
def test_published_flow_params_match_hand_read_table(flow_stem: str, pack_object_info: dict[str, Any]) -> None:
    assert _summary(flow_stem, pack_object_info) == EXPECTED[flow_stem]


def test_ace_step_params_keep_lyrics_first_and_ranges_with_bounds(pack_object_info: dict[str, Any]) -> None:
    flow = load_flow(raw_corpus_flow("ace_step"), pack_object_info)
    lyrics, prompt, length, steps = flow.manifest.inputs
    assert (lyrics.name, lyrics.type, lyrics.display_name, lyrics.optional) == ("lyrics", "text", "Lyrics", False)
    assert lyrics.default.startswith("[Verse 1]\nAcross the skies")
    assert (prompt.name, prompt.default) == (
        "prompt",
        "background music for parties, radio broadcasts, streaming platforms, female voice",
    )
    assert (length.name, length.type, length.default, length.min, length.max, length.step) == (
        "length",
        "range",
        45.0,
        5.0,
        180.0,
        1.0,
    )
    assert (length.optional, length.advanced, length.integer) == (True, False, False)
    assert (steps.name, steps.default, steps.min, steps.max, steps.integer, steps.order) == (
        "steps_count",
        50,
        40,
        500,
        True,
        98,
    )


def test_supir_list_with_a_mapping_keeps_it_and_scale_names_its_image(pack_object_info: dict[str, Any]) -> None:
    flow = load_flow(raw_corpus_flow("supir_upscaler"), pack_object_info)
    scaling = flow.manifest.input("in_param_125")
    assert scaling.options == {
        "Soft": "TiledRestoreEDMSampler",
        "Sharp": "TiledRestoreDPMPP2MSampler",
        "Soft, disabled tiling(for small images)": "RestoreEDMSampler",
        "Sharp, disabled tiling(for small images)": "RestoreDPMPP2MSampler",
    }
    assert flow.manifest.input("in_param_117").options == {v: v for v in ("fp16", "bf16", "fp32", "auto")}
    assert flow.manifest.input("scale_factor").source_input_name == "image_to_upscale"
    assert flow.manifest.input("scale_factor").min == 1.1


def test_mask_inputs_name_the_image_they_mask(pack_object_info: dict[str, Any]) -> None:
    flow = load_flow(raw_corpus_flow("colorful_xl_inpaint"), pack_object_info)
    assert flow.manifest.input("mask_redraw").source_input_name == "source_image"
    assert flow.manifest.input("mask_context").source_input_name == "source_image"


def test_aspect_ratio_choices_come_from_the_node_description(pack_object_info: dict[str, Any]) -> None:
    info = {
        **pack_object_info,
        "VixUiAspectRatioSelector": {"input": {"required": {"aspect_ratio": [["1:1 (1024x1024)", "16:9 (1344x768)"]]}}},
    }
    flow = load_flow(raw_corpus_flow("animagine_xl"), info)
    assert flow.manifest.input("aspect_ratio").options == {
        "1:1 (1024x1024)": "1:1 (1024x1024)",
        "16:9 (1344x768)": "16:9 (1344x768)",
    }
    assert flow.warnings == []


def test_aspect_ratio_without_node_description_offers_only_its_default_and_warns() -> None:
    flow = load_flow(raw_corpus_flow("animagine_xl"), {})
    assert flow.manifest.input("aspect_ratio").options == {"1:1 (1024x1024)": "1:1 (1024x1024)"}
    assert any("aspect-ratio choices unknown" in warning for warning in flow.warnings)


def test_dynamic_lora_param_carries_strength_range(pack_object_info: dict[str, Any]) -> None:
    lora = load_flow(raw_corpus_flow("flux1_dev"), pack_object_info).manifest.input("loras_in_param_39")
    assert (lora.dynamic_lora, lora.min, lora.max, lora.step, lora.order) == (True, 0, 1, 0.01, 50)


def test_models_are_matched_to_catalog_entries(pack_object_info: dict[str, Any], models_catalog: Any) -> None:
    flow = load_flow(raw_corpus_flow("flux1_dev"), pack_object_info, models_catalog=models_catalog)
    by_input = {(ref.node_id, ref.input): ref for ref in flow.manifest.models}
    unet = by_input[("12", "unet_name")]
    assert (unet.name, unet.value, unet.in_catalog) == ("FLUX-1-Dev", "flux1-dev.sft", True)
    assert unet.hash == models_catalog["FLUX-1-Dev"]["hash"]
    assert unet.types == ["diffusion_models", "unet"]
    assert by_input[("10", "vae_name")].name == "FLUX-VAE"
    assert by_input[("11", "clip_name2")].name == "FLUX-CLIP-CLIP_L"
    assert by_input[("39", "lora_name")].name == "Flux-RealismLora"


def test_models_without_catalog_are_reported_by_file_name(pack_object_info: dict[str, Any]) -> None:
    flow = load_flow(raw_corpus_flow("flux1_dev"), pack_object_info)
    refs = {(ref.node_id, ref.input, ref.name, ref.in_catalog) for ref in flow.manifest.models}
    assert ("12", "unet_name", "flux1-dev.sft", False) in refs
    assert ("11", "clip_name1", "t5xxl_fp16.safetensors", False) in refs


def test_class_named_catalog_entries_match_presets(pack_object_info: dict[str, Any], models_catalog: Any) -> None:
    graph = {
        "1": {"class_type": "IPAdapterUnifiedLoader", "inputs": {"preset": "PLUS FACE (portraits)"}},
        "2": {"class_type": "VixUiWorkflowMetadata", "inputs": {"name": "preset_flow"}},
    }
    flow = load_flow(graph, pack_object_info, models_catalog=models_catalog)
    assert [(ref.name, ref.input) for ref in flow.manifest.models] == [("CLIP-ViT-H-14-laion2B-s32B-b79K", "preset")]
