from __future__ import annotations

import json
import logging
import textwrap
from pathlib import Path

import pytest

from visionatrix.errors import NotFound
from visionatrix.nodes.registry import NodeRegistry

THIRD_PARTY_PACK = '''
import torch
import comfy.utils
import comfy.model_management
import folder_paths


class DoubleIt:
    """A typical small ComfyUI pack node, written against ComfyUI's own modules."""

    @classmethod
    def INPUT_TYPES(s):
        return {"required": {"image": ("IMAGE",), "times": ("INT", {"default": 2, "min": 1, "max": 8})}}

    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("doubled",)
    FUNCTION = "double"
    CATEGORY = "example"

    def double(self, image, times):
        bar = comfy.utils.ProgressBar(times)
        for _ in range(times):
            comfy.model_management.throw_exception_if_processing_interrupted()
            bar.update(1)
        return (image * times,)


NODE_CLASS_MAPPINGS = {"DoubleIt": DoubleIt}
NODE_DISPLAY_NAME_MAPPINGS = {"DoubleIt": "Double It"}
'''


def write_pack(root: Path, name: str, body: str, *, as_file: bool = False) -> None:
    if as_file:
        (root / f"{name}.py").write_text(textwrap.dedent(body))
        return
    (root / name).mkdir(parents=True)
    (root / name / "__init__.py").write_text(textwrap.dedent(body))


def test_core_packs_load_and_describe_in_object_info_shape():
    registry = NodeRegistry()
    registry.load_packs([], core_dir=Path("comfy_nodes"))
    assert not registry.failures, registry.failures
    info = registry.object_info()
    assert info, "comfy_nodes/ provides node types"
    for name, entry in info.items():
        for key in (
            "input",
            "input_order",
            "output",
            "output_is_list",
            "output_name",
            "name",
            "display_name",
            "description",
            "python_module",
            "category",
            "output_node",
        ):
            assert key in entry, (name, key)
        assert entry["python_module"].startswith("comfy_nodes.")
        json.dumps(entry)


def test_a_third_party_comfyui_pack_loads_unchanged_and_runs(tmp_path):
    import asyncio

    import torch

    from visionatrix.executor.run import Executor, ExecutorSettings

    write_pack(tmp_path, "ComfyUI-Double", THIRD_PARTY_PACK)
    registry = NodeRegistry()
    registry.load_packs([tmp_path])
    assert "DoubleIt" in registry
    info = registry.describe("DoubleIt")
    assert info["display_name"] == "Double It"
    assert info["python_module"] == "custom_nodes.ComfyUI-Double"
    assert info["input_order"] == {"required": ["image", "times"]}
    assert info["output_name"] == ["doubled"]

    class Source:
        RETURN_TYPES = ("IMAGE",)
        FUNCTION = "run"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}

        def run(self):
            return (torch.ones(1, 2, 2, 3),)

    class Sink:
        RETURN_TYPES = ()
        FUNCTION = "run"
        OUTPUT_NODE = True

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"image": ("IMAGE",)}}

        def run(self, image):
            return {"ui": {"total": [float(image.sum())]}}

    registry.register("Source", Source)
    registry.register("Sink", Sink)
    executor = Executor(registry, ExecutorSettings(device="cpu"))
    prompt = {
        "1": {"class_type": "Source", "inputs": {}},
        "2": {"class_type": "DoubleIt", "inputs": {"image": ["1", 0], "times": 3}},
        "3": {"class_type": "Sink", "inputs": {"image": ["2", 0]}},
    }
    try:
        result = asyncio.run(executor.execute(prompt))
    finally:
        executor.close()
    assert result.ui["3"] == {"total": [36.0]}


def test_a_pack_that_fails_to_import_is_logged_and_skipped(tmp_path, caplog):
    write_pack(tmp_path, "a_broken", "import does_not_exist_anywhere\n")
    write_pack(tmp_path, "b_no_mappings", "X = 1\n", as_file=True)
    write_pack(tmp_path, "c_good", THIRD_PARTY_PACK.replace("DoubleIt", "Tripler"))
    write_pack(tmp_path, "d_off.disabled", THIRD_PARTY_PACK.replace("DoubleIt", "Disabled"))
    registry = NodeRegistry()
    with caplog.at_level(logging.ERROR):
        registry.load_packs([tmp_path])
    assert "Tripler" in registry and "Disabled" not in registry
    assert sorted(f.pack for f in registry.failures) == ["a_broken", "b_no_mappings"]
    assert "does_not_exist_anywhere" in registry.failures[0].error
    assert "IMPORT FAILED" in caplog.text


def test_third_party_packs_cannot_replace_core_nodes(tmp_path):
    write_pack(tmp_path, "evil", THIRD_PARTY_PACK.replace('"DoubleIt": DoubleIt', '"SaveImage": DoubleIt'))
    registry = NodeRegistry()
    registry.load_packs([tmp_path], core_dir=Path("comfy_nodes"))
    assert registry.get("SaveImage").python_module.startswith("comfy_nodes.")


def test_unknown_node_type_lookup_names_it():
    with pytest.raises(NotFound, match="NoSuchNode"):
        NodeRegistry().get("NoSuchNode")


def test_missing_extra_folder_is_skipped(tmp_path):
    registry = NodeRegistry()
    registry.load_packs([tmp_path / "nope"])
    assert len(registry) == 0
