"""Every bundled flow imports with the shipped nodes and runs on the sample image (flows that load models with
tiny random-weight models of the real architectures under the catalog's file names)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests import model_fixtures
from tests.flow_models import corpus_flow_models, fixture_file, write_flow_models
from tests.flow_runs import read_image, run_flow
from visionatrix.flows import FlowStore
from visionatrix.models.folders import ModelFolders
from visionatrix.nodes.registry import NodeRegistry

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "flows" / "examples" / "sample.jpg"
BUNDLED = sorted(p.stem for p in (ROOT / "flows").glob("*.json"))
SDXL_CHECKPOINT = "RealVisXL_V5.0_fp16.safetensors"
SMALL = {"sdxl_text_to_image": {"prompt": "a red fox", "width": 256, "height": 256, "steps": 3},
         "sdxl_image_to_image": {"prompt": "a red fox", "steps": 3},
         "flux_text_to_image": {"prompt": "a red fox", "width": 256, "height": 256, "steps": 2}}
"""Parameters that keep the diffusion flows to seconds on a CPU (their defaults are sized for a GPU)."""


@pytest.fixture(scope="module")
def registry() -> NodeRegistry:
    registry = NodeRegistry()
    registry.load_packs([], core_dir=ROOT / "comfy_nodes")
    return registry


@pytest.fixture(scope="module")
def store(registry) -> FlowStore:
    return FlowStore([ROOT / "flows"], registry.object_info())


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory) -> ModelFolders:
    """The bundled flows' model files: ``upscale_4x``'s two upscalers, the SDXL flows' checkpoint and the Flux flow's
    files (:mod:`tests.flow_models`) as tiny models in their real layouts."""
    root = tmp_path_factory.mktemp("models")
    fixtures = model_fixtures.write_good_models(root / "fixtures")
    (root / "upscale_models").mkdir()
    shutil.copyfile(fixtures["esrgan_x4.pth"], root / "upscale_models" / "4x-UltraSharp.pth")
    shutil.copyfile(fixtures["realesrgan_x2.pth"], root / "upscale_models" / "RealESRGAN_x2plus.pth")
    (root / "checkpoints").mkdir()
    shutil.copyfile(fixture_file(root / "diffusion", "sdxl"), root / "checkpoints" / SDXL_CHECKPOINT)
    write_flow_models(corpus_flow_models(ROOT / "flows" / "flux_text_to_image.json"), root, root / "diffusion")
    return ModelFolders(root)


def test_at_least_six_flows_are_bundled():
    assert len(BUNDLED) >= 6


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_flow_imports_with_shipped_nodes_and_runs(registry, store, model_folders, tmp_path, name):
    flow = store.get(name)
    assert flow.missing_node_types == []
    assert flow.manifest.outputs
    files = {"image": SAMPLE} if flow.manifest.input("image") is not None else {}
    images = run_flow(registry, store, tmp_path, name, SMALL.get(name, {}), files, model_folders)
    assert images and all(img.size[0] > 0 for img in images)


def test_web_resize_keeps_aspect_ratio_at_the_requested_width(registry, store, tmp_path):
    (image,) = run_flow(registry, store, tmp_path, "web_resize_sharpen", {"width": "320"}, {"image": SAMPLE})
    source = read_image(SAMPLE)
    assert image.size == (320, round(320 * source.height / source.width))


def test_pixelate_region_changes_only_the_masked_area(registry, store, tmp_path):
    source = read_image(SAMPLE).convert("RGB")
    mask = Image.new("RGB", source.size, "black")
    mask.paste((255, 255, 255), (0, 0, source.width // 2, source.height))
    mask_path = tmp_path / "mask.png"
    mask.save(mask_path)
    (image,) = run_flow(registry, store, tmp_path, "pixelate_region", {"strength": 16},
                        {"image": SAMPLE, "region_mask": mask_path})
    got = np.asarray(image.convert("RGB")).astype(int)
    original = np.asarray(source).astype(int)
    half = source.width // 2
    assert np.abs(got[:, half + 16:] - original[:, half + 16:]).max() <= 1
    assert np.abs(got[:, : half - 16] - original[:, : half - 16]).mean() > 2


def test_pencil_sketch_in_graphite_is_gray(registry, store, tmp_path):
    (image,) = run_flow(registry, store, tmp_path, "pencil_sketch", {"colored": "false"}, {"image": SAMPLE})
    pixels = np.asarray(image.convert("RGB")).astype(int)
    assert np.abs(pixels[..., 0] - pixels[..., 2]).max() <= 1


def test_contact_sheet_lays_out_six_tiles_in_the_requested_columns(registry, store, tmp_path):
    (image,) = run_flow(registry, store, tmp_path, "effects_contact_sheet", {"tile_width": 64, "columns": 2},
                        {"image": SAMPLE})
    source = read_image(SAMPLE)
    tile_h = round(64 * source.height / source.width)
    assert image.size[0] >= 2 * 64 and image.size[0] < 3 * 64
    assert image.size[1] >= 3 * tile_h
