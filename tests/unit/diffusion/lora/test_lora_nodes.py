"""LoraLoader and LoraLoaderModelOnly on a tiny SD1.5 checkpoint loaded by CheckpointLoaderSimple: ComfyUI's inputs,
the file read once through the model manager, MODEL and CLIP outputs that compute what the textbook-patched
networks compute while the shared networks stay unchanged, strength 0, and clear errors for bad names and files."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from comfy_nodes.diffusion.loaders import CheckpointLoaderSimple
from comfy_nodes.diffusion.lora_nodes import NODE_CLASS_MAPPINGS, LoraLoader, LoraLoaderModelOnly
from tests import diffusion_fixtures, lora_fixtures
from visionatrix.diffusion.clip import TextEncoder
from visionatrix.diffusion.model import DiffusionModel
from visionatrix.diffusion.patches import applied
from visionatrix.errors import InvalidInput, ModelFileError
from visionatrix.models.folders import ModelFolders
from visionatrix.nodes.context import NodeContext, use
from visionatrix.nodes.model_manager import ModelManager

PROMPT = "a photo of a cat"
RECORDS: dict[str, dict[str, tuple[str, str]]] = {}
STATES: dict[str, dict[str, torch.Tensor]] = {}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("models")
    diffusion_fixtures.write_checkpoint(diffusion_fixtures.cached_checkpoint("sd15"), root / "checkpoints")
    for name, kind, fmt, layers in (("style", "sd15", "kohya", "all"), ("peft", "sd15", "diffusers", "attention"),
                                    ("xl", "sdxl", "kohya", "attention")):
        RECORDS[name] = {}
        STATES[name] = lora_fixtures.make_lora(kind, fmt, layers=layers, record=RECORDS[name], text=kind == "sd15")
        lora_fixtures.write_lora(STATES[name], root / "loras", name)
    (root / "loras" / "broken.safetensors").write_bytes(b"not a safetensors file")
    return root


@pytest.fixture
def ctx(models_dir) -> NodeContext:
    manager = ModelManager(device="cpu", ram_budget_bytes=1 << 30, vram_reserve_bytes=0)
    return NodeContext(model_folders=ModelFolders(models_dir), models=manager)


@pytest.fixture
def loaded(ctx) -> tuple[DiffusionModel, TextEncoder]:
    with use(ctx):
        model, clip, _ = CheckpointLoaderSimple().load_checkpoint("sd15.safetensors")
    return model, clip


def unet_output(model: DiffusionModel) -> torch.Tensor:
    generator = torch.Generator().manual_seed(4)
    sample = torch.randn(1, 4, 16, 16, generator=generator)
    context = torch.randn(1, 7, model.context_width, generator=generator)
    with torch.no_grad(), applied(model.unet, model.patches):
        return model.unet(sample, 700, context).sample


def reference_model(model: DiffusionModel, loras: list[tuple[str, float]]) -> DiffusionModel:
    applied_loras = [(STATES[name], RECORDS[name], strength) for name, strength in loras]
    return dataclasses.replace(model, unet=lora_fixtures.patched_copy(model.unet, applied_loras, "unet"), patches=())


def reference_clip(clip: TextEncoder, name: str, strength: float) -> TextEncoder:
    encoders = {key: lora_fixtures.patched_copy(module, [(STATES[name], RECORDS[name], strength)], key)
                for key, module in clip.encoders.items()}
    return dataclasses.replace(clip, encoders=encoders, patches={}, use=None)


def test_inputs_are_comfyuis(ctx):
    assert set(NODE_CLASS_MAPPINGS) == {"LoraLoader", "LoraLoaderModelOnly"}
    with use(ctx):
        required = LoraLoader.INPUT_TYPES()["required"]
        model_only = LoraLoaderModelOnly.INPUT_TYPES()["required"]
    assert list(required) == ["model", "clip", "lora_name", "strength_model", "strength_clip"]
    assert {"style.safetensors", "peft.safetensors", "xl.safetensors"} <= set(required["lora_name"][0])
    for spec in (required["strength_model"], required["strength_clip"], model_only["strength_model"]):
        assert spec[0] == "FLOAT"
        assert {k: spec[1][k] for k in ("default", "min", "max", "step")} == {"default": 1.0, "min": -100.0,
                                                                               "max": 100.0, "step": 0.01}
    assert list(model_only) == ["model", "lora_name", "strength_model"]
    assert LoraLoader.RETURN_TYPES == ("MODEL", "CLIP") and LoraLoaderModelOnly.RETURN_TYPES == ("MODEL",)
    assert LoraLoader.FUNCTION == "load_lora" and LoraLoaderModelOnly.FUNCTION == "load_lora_model_only"


def test_lora_loader_patches_model_and_clip_like_the_reference(ctx, loaded):
    model, clip = loaded
    base_output, base_cond = unet_output(model), clip.encode(PROMPT)[0]
    with use(ctx):
        patched_model, patched_clip = LoraLoader().load_lora(model, clip, "style.safetensors", 0.9, 0.6)
    assert model.patches == () and clip.patches == {}  # the inputs are values: unchanged
    expected = unet_output(reference_model(model, [("style", 0.9)]))
    assert (expected - base_output).abs().max() > 0.05
    torch.testing.assert_close(unet_output(patched_model), expected, rtol=1e-5, atol=2e-5)
    expected_cond = reference_clip(clip, "style", 0.6).encode(PROMPT)[0]
    assert (expected_cond - base_cond).abs().max() > 0.01
    torch.testing.assert_close(patched_clip.encode(PROMPT)[0], expected_cond, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(unet_output(model), base_output, rtol=0, atol=0)  # shared networks restored
    torch.testing.assert_close(clip.encode(PROMPT)[0], base_cond, rtol=0, atol=0)


def test_loras_stack_and_the_file_is_read_once(ctx, loaded):
    model, clip = loaded
    with use(ctx):
        first, clip_1 = LoraLoader().load_lora(model, clip, "style.safetensors", 1.0, 1.0)
        loads = ctx.models.loads
        second, _ = LoraLoader().load_lora(first, clip_1, "peft.safetensors", -0.7, 1.0)
        again, _ = LoraLoader().load_lora(model, clip, "style.safetensors", 1.0, 1.0)
    assert ctx.models.loads == loads + 1 and ctx.models.hits >= 1
    assert any(entry["kind"] == "lora" and entry["bytes"] > 0 for entry in ctx.models.stats()["loaded"])
    assert len(again.patches) == len(first.patches)
    expected = unet_output(reference_model(model, [("style", 1.0), ("peft", -0.7)]))
    torch.testing.assert_close(unet_output(second), expected, rtol=1e-5, atol=2e-5)


def test_model_only_and_zero_strength(ctx, loaded):
    model, clip = loaded
    with use(ctx):
        (patched,) = LoraLoaderModelOnly().load_lora_model_only(model, "style.safetensors", 0.5)
        assert LoraLoader().load_lora(model, clip, "style.safetensors", 0.0, 0.0) == (model, clip)
        assert LoraLoaderModelOnly().load_lora_model_only(model, "style.safetensors", 0.0) == (model,)
        model_only_clip = LoraLoader().load_lora(model, clip, "style.safetensors", 1.0, 0.0)[1]
    assert model_only_clip.patches.get("clip_l", ()) == ()
    torch.testing.assert_close(unet_output(patched), unet_output(reference_model(model, [("style", 0.5)])),
                               rtol=1e-5, atol=2e-5)


def test_bad_names_and_files(ctx, loaded, models_dir):
    model, clip = loaded
    with use(ctx):
        with pytest.raises(InvalidInput, match=r"lora_name: 'missing.safetensors' is not in the loras folder"):
            LoraLoader().load_lora(model, clip, "missing.safetensors", 1.0, 1.0)
        with pytest.raises(ModelFileError, match=r"xl\.safetensors: no LoRA key matches this model \(0 of \d+"):
            LoraLoaderModelOnly().load_lora_model_only(model, "xl.safetensors", 1.0)
        with pytest.raises(ModelFileError, match=r"broken\.safetensors"):
            LoraLoader().load_lora(model, clip, "broken.safetensors", 1.0, 1.0)
        with pytest.raises(InvalidInput, match="model"):
            LoraLoader().load_lora("not a model", clip, "style.safetensors", 1.0, 1.0)
        version = LoraLoader.IS_CHANGED(model=None, clip=None, lora_name="style.safetensors", strength_model=1.0,
                                        strength_clip=1.0)
        stat = (models_dir / "loras" / "style.safetensors").stat()
        assert version == f"{stat.st_size}:{stat.st_mtime_ns}"
        assert math.isnan(LoraLoaderModelOnly.IS_CHANGED(model=None, lora_name="gone.safetensors", strength_model=1))
