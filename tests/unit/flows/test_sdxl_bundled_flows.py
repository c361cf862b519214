"""The two bundled SDXL flows (``sdxl_text_to_image``, ``sdxl_image_to_image``) with a tiny random-weight SDXL
checkpoint under the catalog's file name: their forms, sizes, seeds, and the optional mask of image to image."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.flow_models import fixture_file
from tests.flow_runs import run_flow
from visionatrix.flows import FlowStore
from visionatrix.models.folders import ModelFolders
from visionatrix.nodes.registry import NodeRegistry

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "flows" / "examples" / "sample.jpg"
CHECKPOINT = "RealVisXL_V5.0_fp16.safetensors"


@pytest.fixture(scope="module")
def registry() -> NodeRegistry:
    registry = NodeRegistry()
    registry.load_packs([], core_dir=ROOT / "comfy_nodes")
    return registry


@pytest.fixture(scope="module")
def store(registry: NodeRegistry) -> FlowStore:
    return FlowStore([ROOT / "flows"], registry.object_info())


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory: pytest.TempPathFactory) -> ModelFolders:
    root = tmp_path_factory.mktemp("models")
    (root / "checkpoints").mkdir()
    shutil.copyfile(fixture_file(root / "fixtures", "sdxl"), root / "checkpoints" / CHECKPOINT)
    return ModelFolders(root)


def run(registry: NodeRegistry, store: FlowStore, folders: ModelFolders, tmp_path: Path, name: str,
        params: dict[str, Any], files: dict[str, Path] | None = None) -> np.ndarray:
    """The flow's one output image as int16 RGB (so differences may go negative)."""
    (image,) = run_flow(registry, store, tmp_path, name, params, files, folders)
    return np.asarray(image.convert("RGB")).astype(np.int16)


def test_the_forms_offer_what_the_web_ui_renders(store: FlowStore):
    text = {i.name: i for i in store.get("sdxl_text_to_image").manifest.inputs}
    assert list(text) == ["prompt", "negative_prompt", "width", "height", "steps", "cfg", "sampler"]
    assert not text["prompt"].optional and text["width"].integer and text["width"].step == 64
    assert {name for name, i in text.items() if i.advanced} == {"steps", "cfg", "sampler"}
    image = {i.name: i for i in store.get("sdxl_image_to_image").manifest.inputs}
    assert (image["image"].type, image["image"].optional) == ("image", False)
    assert (image["mask"].type, image["mask"].optional, image["mask"].source_input_name) == ("image_mask", True,
                                                                                               "image")
    for name in ("sdxl_text_to_image", "sdxl_image_to_image"):
        flow = store.get(name)
        assert flow.manifest.is_seed_supported and flow.missing_node_types == []
        assert [model.value for model in flow.manifest.models] == [CHECKPOINT]


def test_text_to_image_gives_the_requested_size_and_follows_the_seed(registry, store, model_folders, tmp_path):
    params = {"prompt": "a red fox in the snow", "width": 320, "height": 256, "steps": 2}
    first = run(registry, store, model_folders, tmp_path / "a", "sdxl_text_to_image", {**params, "seed": 1})
    again = run(registry, store, model_folders, tmp_path / "b", "sdxl_text_to_image", {**params, "seed": 1})
    other = run(registry, store, model_folders, tmp_path / "c", "sdxl_text_to_image", {**params, "seed": 2})
    assert first.shape == (256, 320, 3)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.std() > 1.0


def _left_half_mask(tmp_path: Path, size: tuple[int, int]) -> Path:
    mask = Image.new("RGB", size, "black")
    mask.paste((255, 255, 255), (0, 0, size[0] // 2, size[1]))
    path = tmp_path / "mask.png"
    mask.save(path)
    return path


def test_image_to_image_with_a_mask_redraws_only_the_white_area(registry, store, model_folders, tmp_path):
    with Image.open(SAMPLE) as source:
        original = np.asarray(source.convert("RGB")).astype(np.int16)
        size = source.size
    params = {"prompt": "a painting", "steps": 2, "strength": 0.8, "seed": 3}
    got = run(registry, store, model_folders, tmp_path, "sdxl_image_to_image", params,
              {"image": SAMPLE, "mask": _left_half_mask(tmp_path, size)})
    assert got.shape == original.shape   # 640 x 480: already a multiple of 8
    half = size[0] // 2
    assert np.array_equal(got[:, half:], original[:, half:]), "a pixel outside the mask changed"
    assert np.abs(got[:, :half] - original[:, :half]).mean() > 5


def test_image_to_image_without_a_mask_redraws_everything(registry, store, model_folders, tmp_path):
    with Image.open(SAMPLE) as source:
        small = source.convert("RGB").resize((100, 75))
    path = tmp_path / "odd.png"
    small.save(path)
    got = run(registry, store, model_folders, tmp_path, "sdxl_image_to_image",
              {"prompt": "a painting", "steps": 2, "strength": 0.8, "seed": 3}, {"image": path})
    assert got.shape == (72, 96, 3)      # cropped to a multiple of 8, as the VAE needs
    original = np.asarray(small).astype(np.int16)[:72, :96]
    diff = np.abs(got - original).mean(axis=2)
    assert diff[:, :48].mean() > 5 and diff[:, 48:].mean() > 5
