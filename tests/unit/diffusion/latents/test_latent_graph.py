"""The VAE and latent nodes in a prompt through the executor: validation against their INPUT_TYPES, the model
manager, inference mode and the output cache, with LoadImage and SaveImage around them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from comfy_nodes import image_io
from comfy_nodes.diffusion import conditioning_nodes, freeu_node, latent_nodes, vae_nodes
from tests import diffusion_fixtures
from visionatrix.diffusion.vae import Vae
from visionatrix.errors import InvalidGraph, NodeFailed
from visionatrix.executor.run import Executor, ExecutorSettings
from visionatrix.models.folders import ModelFolders
from visionatrix.nodes.context import NodeContext, use
from visionatrix.nodes.registry import NodeRegistry


@pytest.fixture
def executor(tmp_path, autoencoder):
    registry = NodeRegistry()
    registry.register_mappings(image_io.NODE_CLASS_MAPPINGS, image_io.NODE_DISPLAY_NAME_MAPPINGS,
                               python_module="comfy_nodes.image_io", pack="image_io", core=True)
    for module in (vae_nodes, latent_nodes, conditioning_nodes, freeu_node):
        registry.register_mappings(module.NODE_CLASS_MAPPINGS, module.NODE_DISPLAY_NAME_MAPPINGS,
                                   python_module=module.__name__, pack="diffusion", core=True)
    (tmp_path / "models" / "vae").mkdir(parents=True)
    ldm = diffusion_fixtures.vae_to_ldm(autoencoder.state_dict())
    save_file({key: value.contiguous() for key, value in ldm.items()}, str(tmp_path / "models" / "vae" / "t.sft"))
    (tmp_path / "in").mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in" / "in.png")
    ex = Executor(registry, ExecutorSettings(device="cpu", input_dir=tmp_path / "in", output_dir=tmp_path / "out",
                                             temp_dir=tmp_path / "tmp",
                                             model_folders=ModelFolders(tmp_path / "models")))
    yield ex
    ex.close()


def graph(**changes: Any) -> dict[str, Any]:
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": "t.sft"}},
        "3": {"class_type": "VAEEncode", "inputs": {"pixels": ["1", 0], "vae": ["2", 0]}},
        "4": {"class_type": "LatentUpscaleBy", "inputs": {"samples": ["3", 0], "upscale_method": "bislerp",
                                                          "scale_by": 1.5}},
        "5": {"class_type": "RepeatLatentBatch", "inputs": {"samples": ["4", 0], "amount": 2}},
        "6": {"class_type": "VAEDecodeTiled", "inputs": {"samples": ["5", 0], "vae": ["2", 0], "tile_size": 64,
                                                         "overlap": 32, "temporal_size": 64, "temporal_overlap": 8}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "vae"}},
    }
    for node, inputs in changes.items():
        prompt[node]["inputs"].update(inputs)
    return prompt


def saved(result: Any, out_dir: Path) -> list[np.ndarray]:
    items = [item for ui in result.ui.values() for item in ui.get("images", [])]
    return [np.asarray(Image.open(out_dir / item["subfolder"] / item["filename"])) for item in items]


async def test_an_encode_upscale_repeat_decode_graph_saves_what_the_nodes_compute(executor, tmp_path, autoencoder):
    result = await executor.execute(graph())
    images = saved(result, tmp_path / "out")
    assert [image.shape for image in images] == [(64, 72, 3), (64, 72, 3)]  # 40x48 px -> 5x6 cells -> 8x9 -> x8
    assert np.array_equal(images[0], images[1])
    assert executor.models.loads == 1
    with use(NodeContext()):
        vae = Vae(autoencoder)
        pixels = torch.from_numpy(np.array(Image.open(tmp_path / "in" / "in.png"))).float()[None] / 255
        latent = latent_nodes.upscale(vae.encode(pixels), 9, 8, "bislerp", "disabled")
        expected = vae.decode_tiled(latent, 64, 32)[0]
    got = torch.from_numpy(images[0].astype(np.float32)) / 255
    assert (got - expected).abs().max() <= 1 / 255 + 1e-4  # SaveImage's 8-bit rounding


async def test_out_of_range_inputs_are_refused_before_anything_runs(executor):
    with pytest.raises(InvalidGraph) as caught:
        await executor.execute(graph(**{"4": {"upscale_method": "lanczos9", "scale_by": 9.0},
                                        "6": {"tile_size": 32}}))
    text = "\n".join(caught.value.issue_lines())
    assert "upscale_method" in text and "scale_by" in text and "tile_size" in text
    assert executor.models.loads == 0


async def test_a_file_that_is_not_a_vae_fails_the_loader_node(executor, tmp_path):
    save_file({"conv_first.weight": torch.zeros(4, 3, 3, 3)}, str(tmp_path / "models" / "vae" / "x.sft"))
    with pytest.raises(NodeFailed) as caught:
        await executor.execute(graph(**{"2": {"vae_name": "x.sft"}}))
    assert caught.value.node_id == "2" and "not a VAE" in str(caught.value)
