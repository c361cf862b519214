"""ControlNetLoader, ControlNetApply and ControlNetApplyAdvanced: ComfyUI's inputs and outputs, loading through the
model manager once, conditioning entries copied with chained controls (one shared per previous control), strength 0
a no-op, bad names, files and images refused clearly; the loaded control computes the original's residuals."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from comfy_nodes.diffusion import controlnet_nodes as nodes
from tests import controlnet_fixtures as fx
from visionatrix.diffusion.checkpoints.detect import Family
from visionatrix.diffusion.controlnet import AppliedControl, ControlNet
from visionatrix.diffusion.sampling import model_sampling
from visionatrix.errors import InvalidInput, ModelFileError
from visionatrix.models.folders import ModelFolders
from visionatrix.nodes.context import NodeContext, use
from visionatrix.nodes.model_manager import ModelManager


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    folder = root / "controlnet"
    fx.write_controlnet(fx.cached_controlnet("sd15"), folder, "ldm", name="control_sd15_canny.safetensors")
    fx.write_controlnet(fx.cached_controlnet("sdxl"), folder / "xl", "diffusers", name="canny_xl.safetensors")
    save_file({"conv_first.weight": torch.zeros(4, 3, 3, 3)}, str(folder / "not_a_controlnet.safetensors"))
    return root


@pytest.fixture
def ctx(models_dir) -> NodeContext:
    manager = ModelManager(device="cpu", ram_budget_bytes=1 << 30, vram_reserve_bytes=0)
    return NodeContext(model_folders=ModelFolders(models_dir), models=manager)


def _load(ctx: NodeContext, name: str) -> ControlNet:
    with use(ctx):
        return nodes.ControlNetLoader().load_controlnet(name)[0]


def test_inputs_and_outputs_are_comfyuis(ctx):
    with use(ctx):
        loader = nodes.ControlNetLoader.INPUT_TYPES()["required"]
    assert set(loader["control_net_name"][0]) == {"control_sd15_canny.safetensors", "xl/canny_xl.safetensors",
                                                   "not_a_controlnet.safetensors"}
    assert nodes.ControlNetLoader.RETURN_TYPES == ("CONTROL_NET",)
    assert nodes.ControlNetLoader.FUNCTION == "load_controlnet" and nodes.ControlNetLoader.CATEGORY == "loaders"
    simple = nodes.ControlNetApply.INPUT_TYPES()["required"]
    assert list(simple) == ["conditioning", "control_net", "image", "strength"]
    assert simple["strength"] == ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.01})
    assert nodes.ControlNetApply.RETURN_TYPES == ("CONDITIONING",)
    advanced = nodes.ControlNetApplyAdvanced.INPUT_TYPES()
    assert list(advanced["required"]) == ["positive", "negative", "control_net", "image", "strength",
                                          "start_percent", "end_percent"]
    assert advanced["required"]["start_percent"] == ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001})
    assert advanced["required"]["end_percent"][1]["default"] == 1.0
    assert advanced["optional"] == {"vae": ("VAE",)}
    assert nodes.ControlNetApplyAdvanced.RETURN_TYPES == ("CONDITIONING", "CONDITIONING")
    assert nodes.ControlNetApplyAdvanced.RETURN_NAMES == ("positive", "negative")
    assert all(cls.FUNCTION == "apply_controlnet" and cls.CATEGORY == "conditioning/controlnet"
               for cls in (nodes.ControlNetApply, nodes.ControlNetApplyAdvanced))
    assert set(nodes.NODE_CLASS_MAPPINGS) == set(nodes.NODE_DISPLAY_NAME_MAPPINGS) == {
        "ControlNetLoader", "ControlNetApply", "ControlNetApplyAdvanced"}


def test_the_loader_loads_each_file_once_through_the_manager(ctx, models_dir):
    first = _load(ctx, "control_sd15_canny.safetensors")
    assert isinstance(first, ControlNet)
    assert first.family is Family.SD1 and first.name == "control_sd15_canny.safetensors"
    again = _load(ctx, "control_sd15_canny.safetensors")
    assert again.module is first.module
    assert ctx.models.loads == 1 and ctx.models.hits == 1
    assert ctx.models.stats()["loaded"][0]["kind"] == "controlnet"
    xl = _load(ctx, "xl/canny_xl.safetensors")
    assert xl.family is Family.SDXL and xl.takes_added_cond
    stat = os.stat(models_dir / "controlnet" / "control_sd15_canny.safetensors")
    with use(ctx):
        assert nodes.ControlNetLoader.IS_CHANGED("control_sd15_canny.safetensors") == \
            f"{stat.st_size}:{stat.st_mtime_ns}"


def test_a_missing_name_or_a_bad_file_is_refused(ctx):
    with pytest.raises(InvalidInput, match=r"control_net_name: 'nope\.safetensors' is not in the controlnet folder"):
        _load(ctx, "nope.safetensors")
    with pytest.raises(ModelFileError, match="not a ControlNet"):
        _load(ctx, "not_a_controlnet.safetensors")


def _cond(tag: float, **options) -> list:
    return [torch.full((1, 77, 64), tag), options]


def test_apply_copies_each_entry_and_chains_on_its_control(ctx):
    net = _load(ctx, "control_sd15_canny.safetensors")
    image = torch.rand(1, 64, 64, 3)
    earlier = AppliedControl(net, image, 0.3)
    conditioning = [_cond(1.0, pooled_output=None), _cond(2.0, control=earlier)]
    (out,) = nodes.ControlNetApply().apply_controlnet(conditioning, net, image, 0.6)
    assert "control" not in conditioning[0][1] and conditioning[1][1]["control"] is earlier  # inputs untouched
    assert out[0][0] is conditioning[0][0] and out[0][1]["pooled_output"] is None
    first, second = out[0][1]["control"], out[1][1]["control"]
    assert first is not second
    assert (first.strength, first.start_percent, first.end_percent, first.previous) == (0.6, 0.0, 1.0, None)
    assert second.previous is earlier and second.net is net and second.hint is image
    assert out[0][1]["control_apply_to_uncond"] is True
    assert nodes.ControlNetApply().apply_controlnet(conditioning, net, image, 0.0)[0] is conditioning


def test_apply_advanced_shares_one_control_per_previous_control(ctx):
    net = _load(ctx, "control_sd15_canny.safetensors")
    image = torch.rand(1, 64, 64, 3)
    earlier = AppliedControl(net, image)
    positive = [_cond(1.0), _cond(2.0, control=earlier)]
    negative = [_cond(3.0), _cond(4.0, control=earlier)]
    new_positive, new_negative = nodes.ControlNetApplyAdvanced().apply_controlnet(
        positive, negative, net, image, 0.9, 0.2, 0.8)
    plain, chained = new_positive[0][1]["control"], new_positive[1][1]["control"]
    assert new_negative[0][1]["control"] is plain and new_negative[1][1]["control"] is chained
    assert plain.previous is None and chained.previous is earlier
    assert (plain.strength, plain.start_percent, plain.end_percent) == (0.9, 0.2, 0.8)
    assert all(entry[1]["control_apply_to_uncond"] is False for entry in new_positive + new_negative)
    assert "control" not in positive[0][1] and negative[1][1]["control"] is earlier
    same = nodes.ControlNetApplyAdvanced().apply_controlnet(positive, negative, net, image, 0.0, 0.0, 1.0, vae=None)
    assert same[0] is positive and same[1] is negative


def test_apply_refuses_images_and_values_that_do_not_fit(ctx):
    net = _load(ctx, "control_sd15_canny.safetensors")
    with pytest.raises(InvalidInput, match=r"image: .* takes 3-channel images, got 1"):
        nodes.ControlNetApplyAdvanced().apply_controlnet([_cond(1.0)], [_cond(2.0)], net, torch.rand(1, 8, 8, 1), 1.0)
    with pytest.raises(InvalidInput, match="control_net: expected a CONTROL_NET"):
        nodes.ControlNetApply().apply_controlnet([_cond(1.0)], "net", torch.rand(1, 8, 8, 3), 1.0)


def test_a_loaded_and_applied_control_gives_the_original_residuals(ctx):
    tiny = fx.cached_controlnet("sd15")
    net = _load(ctx, "control_sd15_canny.safetensors")
    data = fx.inputs(tiny, batch=2)
    positive, _ = nodes.ControlNetApplyAdvanced().apply_controlnet(
        [[data["context"][:1], {}]], [[data["context"][1:], {}]], net, data["hint"], 0.75, 0.0, 1.0)
    control = positive[0][1]["control"]
    with use(ctx):
        down, mid = control.residuals(data["x_in"], data["timestep"], torch.tensor([2.0, 2.0]), data["context"],
                                      None, model_sampling.discrete())
    hint = data["hint"].movedim(-1, 1).expand(2, -1, -1, -1)
    ref_down, ref_mid = fx.direct(tiny, data["x_in"], data["timestep"], data["context"], None, hint, 0.75)
    assert torch.allclose(mid, ref_mid, atol=1e-5, rtol=0)
    assert all(torch.allclose(a, b, atol=1e-5, rtol=0) for a, b in zip(down, ref_down, strict=True))
