"""The upscale pack on real (tiny, random-weight) spandrel architectures: the node's output equals spandrel's own
call on the same image, tiles blend like an independent re-implementation, padding, progress, interrupts, OOM
halving; bad model files fail their task with the file named and the worker takes the next one."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import spandrel
import torch
from PIL import Image

from comfy_nodes.upscale_models import upscale
from comfy_nodes.upscale_models.loader import UpscaleModelLoader
from comfy_nodes.upscale_models.upscale import ImageUpscaleWithModel
from tests import model_fixtures
from visionatrix.errors import Interrupted, InvalidInput, ModelError, ModelFileError, NodeFailed
from visionatrix.executor.run import Executor, ExecutorSettings
from visionatrix.flows import FlowStore, bind_params
from visionatrix.models.folders import ModelFolders
from visionatrix.nodes.context import NodeContext, use
from visionatrix.nodes.model_manager import ModelManager
from visionatrix.nodes.registry import NodeRegistry

ROOT = Path(__file__).resolve().parents[3]
GOOD = ["esrgan_x4.pth", "esrgan_x4.safetensors", "realesrgan_x2.pth", "realesrgan_x2.safetensors",
        "compact_x2.pth", "compact_x2.safetensors"]
SCALES = {"esrgan_x4": 4, "realesrgan_x2": 2, "compact_x2": 2}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    model_fixtures.write_good_models(root / "upscale_models")
    model_fixtures.write_bad_files(root / "upscale_models")
    return root


@pytest.fixture
def ctx(models_dir) -> NodeContext:
    manager = ModelManager(device="cpu", ram_budget_bytes=1 << 30, vram_reserve_bytes=0)
    return NodeContext(model_folders=ModelFolders(models_dir), models=manager)


def image(height: int, width: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, height, width, 3, generator=torch.Generator().manual_seed(seed))


def direct(models_dir: Path, name: str) -> Any:
    """The model as spandrel loads the file itself: the reference."""
    return spandrel.ModelLoader().load_from_file(models_dir / "upscale_models" / name).eval()


def direct_call(descriptor: Any, pixels: torch.Tensor) -> torch.Tensor:
    """spandrel's call on one BHWC image, back as BHWC."""
    return descriptor(pixels.permute(0, 3, 1, 2).contiguous()).permute(0, 2, 3, 1)


def load(ctx: NodeContext, name: str) -> Any:
    with use(ctx):
        return UpscaleModelLoader().load_model(name)[0]


def run_node(ctx: NodeContext, model: Any, pixels: torch.Tensor) -> torch.Tensor:
    with use(ctx):
        return ImageUpscaleWithModel().upscale(model, pixels)[0]


def test_loader_lists_the_folder_and_loads_each_file_once(ctx):
    with use(ctx):
        choices = UpscaleModelLoader.INPUT_TYPES()["required"]["model_name"][0]
    assert set(GOOD) <= set(choices)
    first = load(ctx, "esrgan_x4.safetensors")
    assert isinstance(first, spandrel.ImageModelDescriptor) and first.scale == 4
    assert load(ctx, "esrgan_x4.safetensors") is first
    assert (ctx.models.loads, ctx.models.hits) == (1, 1)


def test_a_missing_model_names_the_file_and_the_folder(ctx):
    with pytest.raises(InvalidInput, match=r"'nope\.pth' is not in the upscale_models folder") as caught:
        load(ctx, "nope.pth")
    assert caught.value.input_name == "model_name"


@pytest.mark.parametrize("name", GOOD)
def test_output_equals_a_direct_spandrel_call_on_an_image_within_one_tile(ctx, models_dir, name):
    pixels = image(37, 29)  # odd sizes: the x2 Real-ESRGAN needs multiples of 4, padded and cropped back
    got = run_node(ctx, load(ctx, name), pixels)
    scale = SCALES[name.split(".")[0]]
    assert got.shape == (1, 37 * scale, 29 * scale, 3) and got.dtype == torch.float32
    assert torch.equal(got, direct_call(direct(models_dir, name), pixels))


def test_each_image_of_a_batch_is_upscaled(ctx, models_dir):
    pixels = image(20, 24, batch=2)
    got = run_node(ctx, load(ctx, "compact_x2.pth"), pixels)
    reference = direct(models_dir, "compact_x2.pth")
    assert torch.equal(got, torch.cat([direct_call(reference, pixels[i:i + 1]) for i in range(2)]))


def test_images_below_the_minimum_size_are_padded_and_cropped_back(ctx, models_dir):
    pixels = image(3, 2)
    got = run_node(ctx, load(ctx, "realesrgan_x2.safetensors"), pixels)
    assert got.shape == (1, 6, 4, 3)
    assert torch.equal(got, direct_call(direct(models_dir, "realesrgan_x2.safetensors"), pixels))


def reference_tiled(descriptor: Any, pixels: torch.Tensor, tile: int, overlap: int) -> torch.Tensor:
    """Written apart from the pack: per axis, the fewest equal tiles no longer than ``tile`` whose neighbours share
    at least ``overlap`` px, spread evenly edge to edge; each output pixel the mean of the tiles covering it,
    weighted by min(1, distance to a tile edge that is not the image's edge / (overlap*scale + 1))."""
    scale = descriptor.scale
    height, width = pixels.shape[1], pixels.shape[2]

    def spans(size: int) -> tuple[list[int], int]:
        count = 1
        while True:  # n tiles of length L cover size with overlaps >= overlap when n*L - (n-1)*overlap >= size
            length = math.ceil((size + (count - 1) * overlap) / count)
            if length <= tile:
                break
            count += 1
        if count == 1:
            return [0], size
        return [round(i * (size - length) / (count - 1)) for i in range(count)], length

    (row_starts, tile_h), (col_starts, tile_w) = spans(height), spans(width)
    ramp = overlap * scale + 1
    total = np.zeros((height * scale, width * scale, 3))
    weights = np.zeros((height * scale, width * scale, 1))
    for top in row_starts:
        for left in col_starts:
            crop = pixels[:, top:top + tile_h, left:left + tile_w]
            out = direct_call(descriptor, crop)[0].double().numpy()
            ys, xs = np.arange(tile_h * scale), np.arange(tile_w * scale)
            wy, wx = np.ones(tile_h * scale), np.ones(tile_w * scale)
            if top > 0:
                wy = np.minimum(wy, (ys + 1) / ramp)
            if top + tile_h < height:
                wy = np.minimum(wy, (tile_h * scale - ys) / ramp)
            if left > 0:
                wx = np.minimum(wx, (xs + 1) / ramp)
            if left + tile_w < width:
                wx = np.minimum(wx, (tile_w * scale - xs) / ramp)
            w = (wy[:, None] * wx[None, :])[..., None]
            total[top * scale:(top + tile_h) * scale, left * scale:(left + tile_w) * scale] += out * w
            weights[top * scale:(top + tile_h) * scale, left * scale:(left + tile_w) * scale] += w
    return torch.from_numpy(total / weights).float()[None]


@pytest.mark.parametrize(("name", "tile", "overlap"), [
    ("esrgan_x4.pth", 32, 8),
    ("realesrgan_x2.safetensors", 18, 6),  # tiles not a multiple of 4: each one padded for the model
    ("compact_x2.pth", 24, 4),
])
def test_tiled_output_equals_an_independent_blend_of_direct_calls_per_tile(ctx, models_dir, name, tile, overlap):
    pixels = image(70, 53, seed=3)
    model = load(ctx, name)
    with use(ctx):
        got = upscale.upscale_batch(model, pixels, tile=tile, overlap=overlap)
    reference = direct(models_dir, name)
    torch.testing.assert_close(got, reference_tiled(reference, pixels, tile, overlap), atol=2e-6, rtol=1e-5)
    # it really was tiled: random weights see far past these small overlaps, so it differs from a whole-image call
    assert not torch.equal(got, direct_call(reference, pixels))


def test_progress_is_reported_per_tile(ctx):
    seen: list[tuple[float, float]] = []
    tracked = dataclasses.replace(ctx, on_progress=lambda value, total, preview=None: seen.append((value, total)))
    model = load(ctx, "compact_x2.pth")
    with use(tracked):
        upscale.upscale_batch(model, image(70, 53, batch=2), tile=32, overlap=8)
    # 3 rows of 29 px tiles cover 70 px and 2 columns of 31 px cover 53 px: 6 tiles per image
    assert seen == [(float(n), 12.0) for n in range(1, 13)]


class CountingModel:
    """A descriptor wrapper that counts tile calls and runs out of memory for tiles wider than ``max_side``."""

    def __init__(self, inner: Any, max_side: int | None = None) -> None:
        self.inner, self.max_side, self.calls, self.sides = inner, max_side, 0, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __call__(self, tile: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.sides.append(max(tile.shape[-2:]))
        if self.max_side is not None and max(tile.shape[-2:]) > self.max_side:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.inner(tile)


def test_an_interrupt_stops_between_tiles(ctx):
    model = CountingModel(load(ctx, "compact_x2.pth"))
    seen: list[float] = []

    def progress(value: float, total: float, preview: Any = None) -> None:
        seen.append(value)
        if value == 2:
            ctx.interrupt_event.set()

    with use(dataclasses.replace(ctx, on_progress=progress)), pytest.raises(Interrupted):
        upscale.upscale_batch(model, image(70, 53), tile=32, overlap=8)
    assert seen == [1.0, 2.0] and model.calls == 3


def test_out_of_memory_halves_the_tile_and_starts_again(ctx):
    inner = load(ctx, "compact_x2.pth")
    model = CountingModel(inner, max_side=256)
    pixels = image(300, 280, seed=5)
    got = run_node(ctx, model, pixels)
    # one whole-image tile, then 2 x 2 tiles of at most 256 px (166 x 156)
    assert model.sides[0] == 300 and model.sides[1:] == [166] * 4
    with use(ctx):
        assert torch.equal(got, upscale.upscale_batch(inner, pixels, tile=256))


def test_out_of_memory_at_the_smallest_tile_is_a_clear_error(ctx):
    model = CountingModel(load(ctx, "compact_x2.pth"), max_side=8)
    with pytest.raises(ModelError, match="out of memory upscaling a 100x90 image even in 64 px tiles"):
        run_node(ctx, model, image(90, 100))
    assert model.sides == [100, 100, 100, 61]  # whole image at 512, 256 and 128 px tiles; 64 px tiles of 55 x 61


def test_images_the_model_cannot_take_are_refused_naming_the_input(ctx):
    model = load(ctx, "compact_x2.pth")
    with pytest.raises(InvalidInput, match="image: has 4 channels; the upscale model takes 3"):
        run_node(ctx, model, torch.rand(1, 8, 8, 4))
    with pytest.raises(InvalidInput, match=r"upscale_model: expected an UPSCALE_MODEL"):
        run_node(ctx, "not a model", image(8, 8))
    small = dataclasses.replace(ctx, max_image_pixels=1000)
    with pytest.raises(InvalidInput, match="exceeds the limit of 1000"):
        run_node(small, model, image(20, 20))


# --- through the executor ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def registry() -> NodeRegistry:
    registry = NodeRegistry()
    registry.load_packs([], core_dir=ROOT / "comfy_nodes")
    return registry


def upscale_graph(model_name: str, image_name: str = "in.png") -> dict[str, Any]:
    return {"1": {"class_type": "LoadImage", "inputs": {"image": image_name}},
            "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": model_name}},
            "3": {"class_type": "ImageUpscaleWithModel", "inputs": {"upscale_model": ["2", 0], "image": ["1", 0]}},
            "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "up"}}}


def write_png(path: Path, width: int, height: int, seed: int = 0) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def saved_images(result: Any, out_dir: Path) -> list[Image.Image]:
    items = [item for ui in result.ui.values() for item in ui.get("images", [])]
    images = []
    for item in items:
        with Image.open(out_dir / item["subfolder"] / item["filename"]) as opened:
            images.append(opened.copy())
    return images


@pytest.fixture
def executor(registry, models_dir, tmp_path):
    write_png(tmp_path / "in" / "in.png", 24, 16)
    write_png(tmp_path / "in" / "other.png", 20, 12, seed=1)
    ex = Executor(registry, ExecutorSettings(device="cpu", input_dir=tmp_path / "in", output_dir=tmp_path / "out",
                                             temp_dir=tmp_path / "tmp", model_folders=ModelFolders(models_dir)))
    yield ex
    ex.close()


@pytest.mark.parametrize(("kind", "reason"), [
    ("text_pth", "not a readable torch checkpoint"),
    ("truncated", "not a readable safetensors file"),
    ("code_pickle", "the pickle needs code to load"),
    ("wrong_kind", "not an upscale model"),
])
async def test_a_bad_model_file_fails_the_task_naming_it_and_the_next_task_runs(executor, models_dir, tmp_path,
                                                                                kind, reason):
    bad = model_fixtures.write_bad_files(tmp_path / "bad")[kind]
    with pytest.raises(NodeFailed) as caught:
        await executor.execute(upscale_graph(bad.name))
    assert caught.value.node_id == "2" and isinstance(caught.value.cause, ModelFileError)
    assert bad.name in str(caught.value) and reason in str(caught.value)
    result = await executor.execute(upscale_graph("esrgan_x4.safetensors"))
    (saved,) = saved_images(result, tmp_path / "out")
    assert saved.size == (24 * 4, 16 * 4)


async def test_a_second_task_with_the_same_model_loads_nothing(executor, tmp_path):
    await executor.execute(upscale_graph("realesrgan_x2.pth"))
    executor.clear_cache()  # node outputs forgotten: the loader runs again and asks the manager
    result = await executor.execute(upscale_graph("realesrgan_x2.pth", "other.png"))
    assert "2" in result.executed
    assert (executor.models.loads, executor.models.hits) == (1, 1)
    (saved,) = saved_images(result, tmp_path / "out")
    assert saved.size == (40, 24)


async def test_freeing_models_drops_the_cached_loader_output_too(executor):
    await executor.execute(upscale_graph("compact_x2.safetensors"))
    assert executor.free_models() > 0
    assert executor.models.stats()["loaded"] == []
    result = await executor.execute(upscale_graph("compact_x2.safetensors", "other.png"))
    assert "2" in result.executed and executor.models.loads == 2


def test_the_bundled_upscale_flow_matches_the_catalog_models_and_runs(registry, tmp_path):
    import json

    catalog = json.loads((ROOT / "visionatrix" / "models" / "models_catalog.json").read_text())
    store = FlowStore([ROOT / "flows"], registry.object_info(), models_catalog=catalog)
    flow = store.get("upscale_4x")
    assert {(m.name, m.in_catalog) for m in flow.manifest.models} == {("4x-UltraSharp", True),
                                                                       ("RealESRGAN_x2plus", True)}
    models = tmp_path / "models" / "upscale_models"
    fixtures = model_fixtures.write_good_models(tmp_path / "fixtures")
    models.mkdir(parents=True)
    shutil.copyfile(fixtures["esrgan_x4.pth"], models / "4x-UltraSharp.pth")
    shutil.copyfile(fixtures["realesrgan_x2.pth"], models / "RealESRGAN_x2plus.pth")
    write_png(tmp_path / "in" / "image.png", 20, 14)
    executor = Executor(registry, ExecutorSettings(device="cpu", input_dir=tmp_path / "in",
                                                   output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp",
                                                   model_folders=ModelFolders(tmp_path / "models")))
    try:
        for choice, size in (("4x-UltraSharp", (80, 56)), ("RealESRGAN x2plus", (40, 28))):
            prompt = bind_params(flow, {"model": choice}, {"image": "image.png"})
            result = asyncio.run(executor.execute(prompt))
            (saved,) = saved_images(result, tmp_path / "out")
            assert saved.size == size
        assert executor.models.loads == 2  # only the chosen branch's model is loaded
    finally:
        executor.close()


@pytest.mark.slow
def test_an_inpainting_model_is_the_wrong_kind_for_the_upscale_loader():
    from spandrel.architectures.LaMa import LaMa

    from comfy_nodes.upscale_models.loader import build_descriptor

    state_dict = LaMa(in_nc=4, out_nc=3).state_dict()  # spandrel's MIT registry loads it as a masked-image model
    with pytest.raises(ValueError, match="a LaMa model takes an image and a mask"):
        build_descriptor(state_dict)
