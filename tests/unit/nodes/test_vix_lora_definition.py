"""VixDynamicLoraDefinition: the published node's interface, model and clip passed through untouched, and the
corpus flow's node accepted as it is written."""

from __future__ import annotations

import json
from pathlib import Path

from comfy_nodes.vix_ui import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, VixDynamicLoraDefinition
from tests.corpus import VIXFLOWS
from visionatrix.nodes.registry import NodeRegistry

ROOT = Path(__file__).resolve().parents[3]


def test_matches_the_published_interface():
    assert NODE_CLASS_MAPPINGS["VixDynamicLoraDefinition"] is VixDynamicLoraDefinition
    assert NODE_DISPLAY_NAME_MAPPINGS["VixDynamicLoraDefinition"] == "Vix-DynamicLoraDefinition"
    spec = VixDynamicLoraDefinition.INPUT_TYPES()
    assert {name: kind for name, (kind, _) in spec["required"].items()} == {
        "model": "MODEL", "clip": "CLIP", "base_model_type": "STRING", "description": "STRING"}
    assert "optional" not in spec
    assert VixDynamicLoraDefinition.RETURN_TYPES == ("MODEL", "CLIP")
    assert VixDynamicLoraDefinition.CATEGORY == "Visionatrix/UI"


def test_passes_model_and_clip_through_unchanged():
    model, clip = object(), object()
    node = VixDynamicLoraDefinition()
    returned = getattr(node, node.FUNCTION)(model=model, clip=clip, base_model_type="Flux.1 D",
                                            description="LoRAs to apply")
    assert returned[0] is model and returned[1] is clip


def test_the_corpus_flow_node_fits_the_interface_and_the_pack_registers_it():
    flow = json.loads((VIXFLOWS / "flux1_dev.json").read_text())
    (node,) = [n for n in flow.values() if n.get("class_type") == "VixDynamicLoraDefinition"]
    assert set(node["inputs"]) == set(VixDynamicLoraDefinition.INPUT_TYPES()["required"])
    registry = NodeRegistry()
    registry.load_packs([], core_dir=ROOT / "comfy_nodes")
    assert registry.node_class("VixDynamicLoraDefinition") is VixDynamicLoraDefinition
