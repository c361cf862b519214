"""ControlNet files in both layouts (LDM single file with or without ``control_model.``, diffusers) load into
``ControlNetModel``s computing what the originals compute; configs come from shapes (or a fitting config.json);
real-size shapes give the published configs; bad files are refused naming what was found."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from tests import controlnet_fixtures as fx
from visionatrix.diffusion.checkpoints.detect import Family, shapes_of
from visionatrix.diffusion.controlnet import AppliedControl, ControlNet, build_controlnet, detect
from visionatrix.diffusion.sampling import model_sampling
from visionatrix.errors import ModelFileError
from visionatrix.nodes.state_dicts import read_state_dict

FAMILIES = {"sd15": Family.SD1, "sd2": Family.SD2, "sdxl": Family.SDXL}
LAYOUTS = {"diffusers": lambda net: net.diffusers_state(), "ldm": lambda net: net.ldm_state(),
           "ldm_no_prefix": lambda net: net.ldm_state("")}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _heads(module) -> tuple:
    heads = module.config.attention_head_dim
    return tuple(heads) if isinstance(heads, list | tuple) else (heads,) * len(module.config.block_out_channels)


def _max_error(ours, reference) -> float:
    down, mid = ours
    ref_down, ref_mid = reference
    assert len(down) == len(ref_down)
    return max((a - b).abs().max().item() for a, b in zip([*down, mid], [*ref_down, ref_mid], strict=True))


@pytest.mark.parametrize(("kind", "layout"), [("sd15", "diffusers"), ("sd15", "ldm"), ("sd15", "ldm_no_prefix"),
                                             ("sd2", "ldm"), ("sdxl", "diffusers"), ("sdxl", "ldm_no_prefix")])
def test_each_layout_gives_the_residuals_of_the_original(kind, layout, tmp_path):
    net = fx.cached_controlnet(kind)
    path = tmp_path / f"{kind}.safetensors"
    save_file(LAYOUTS[layout](net), str(path))
    state = read_state_dict(path)
    info = detect.detect(shapes_of(state), path)
    assert info.family is FAMILIES[kind]
    assert info.layout == ("diffusers" if layout == "diffusers" else "ldm")
    assert info.embedding_channels == fx.HINT_CHANNELS
    module = build_controlnet(state, path)
    # the heads come from the family's rule: the same attention as the original
    assert _heads(module) == _heads(net.module)
    data = fx.inputs(net, batch=2)
    applied = AppliedControl(ControlNet(module, info.family, path.name), data["hint"], strength=0.8)
    ours = applied.residuals(data["x_in"], data["timestep"], torch.tensor([3.0, 3.0]), data["context"],
                             data["added_cond"], model_sampling.discrete())
    hint = data["hint"].movedim(-1, 1).expand(2, -1, -1, -1)
    reference = fx.direct(net, data["x_in"], data["timestep"], data["context"], data["added_cond"], hint, 0.8)
    assert reference[1].abs().mean() > 1e-2  # perturbed zero convolutions: real, non-zero residuals
    assert _max_error(ours, reference) < 1e-5


def test_the_reverse_map_names_the_ldm_keys_of_real_files():
    keys = set(fx.cached_controlnet("sd15").ldm_state())
    for key in ("control_model.input_hint_block.0.weight", "control_model.input_hint_block.14.weight",
                "control_model.zero_convs.0.0.weight", "control_model.middle_block_out.0.weight",
                "control_model.time_embed.0.weight", "control_model.input_blocks.1.1.proj_in.weight",
                "control_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight"):
        assert key in keys
    sdxl = set(fx.cached_controlnet("sdxl").ldm_state(""))
    assert "label_emb.0.0.weight" in sdxl and "label_emb.0.2.weight" in sdxl


REAL_CONTROLNETS = {
    # published ControlNetModel configs (lllyasviel/control_v11p_sd15_canny, thibaud/controlnet-sd21,
    # diffusers/controlnet-canny-sdxl-1.0), the fields that differ from the defaults
    Family.SD1: {"block_out_channels": (320, 640, 1280, 1280), "cross_attention_dim": 768, "attention_head_dim": 8},
    Family.SD2: {"block_out_channels": (320, 640, 1280, 1280), "cross_attention_dim": 1024,
                 "attention_head_dim": (5, 10, 20, 20), "use_linear_projection": True},
    Family.SDXL: {"block_out_channels": (320, 640, 1280), "cross_attention_dim": 2048,
                  "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                  "transformer_layers_per_block": (1, 2, 10), "attention_head_dim": (5, 10, 20),
                  "use_linear_projection": True, "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
                  "projection_class_embeddings_input_dim": 2816},
}


@pytest.mark.parametrize("family", list(REAL_CONTROLNETS))
@pytest.mark.parametrize("layout", ["ldm", "diffusers"])
def test_real_size_shapes_give_the_published_config(family, layout):
    from diffusers import ControlNetModel

    with torch.device("meta"):  # shapes only
        real = ControlNetModel(**REAL_CONTROLNETS[family])
    state = real.state_dict()
    if layout == "ldm":
        state = {"control_model." + key: value for key, value in fx.controlnet_to_ldm(state).items()}
    info = detect.detect(shapes_of(state))
    assert info.family is family
    config = detect.diffusers_config(info)
    with torch.device("meta"):
        rebuilt = ControlNetModel(**config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in real.state_dict().items()}
    assert rebuilt.config.attention_head_dim == real.config.attention_head_dim
    assert rebuilt.config.addition_time_embed_dim == real.config.addition_time_embed_dim
    if layout == "ldm":
        from visionatrix.diffusion.controlnet.convert import ldm_to_diffusers

        own = {key[len("control_model."):]: value for key, value in state.items()}
        assert set(ldm_to_diffusers(own, config)) == set(real.state_dict())


def _odd_heads_controlnet():
    """The tiny SDXL ControlNet with heads its family's rule would not give (a config.json must tell them)."""
    from diffusers import ControlNetModel

    net = fx.cached_controlnet("sdxl")
    config = dict(net.module.config)
    config["attention_head_dim"] = (1, 1, 1)
    odd = ControlNetModel(**{k: v for k, v in config.items() if not k.startswith("_")})
    odd.load_state_dict(net.module.state_dict())
    return fx.TinyControlNet("sdxl", odd.eval())


def _residuals(module, net, data):
    applied = AppliedControl(ControlNet(module, Family.SDXL), data["hint"])
    return applied.residuals(data["x_in"], data["timestep"], 1.0, data["context"], data["added_cond"],
                             model_sampling.discrete())


def test_a_fitting_config_json_beside_the_file_is_used(tmp_path):
    odd = _odd_heads_controlnet()
    path = fx.write_controlnet(odd, tmp_path / "canny", "diffusers", name="diffusion_pytorch_model.safetensors")
    odd.module.save_config(str(tmp_path / "canny"))  # config.json beside it
    data = fx.inputs(odd)
    hint = data["hint"].movedim(-1, 1)
    reference = fx.direct(odd, data["x_in"], data["timestep"], data["context"], data["added_cond"], hint)
    module = build_controlnet(read_state_dict(path), path)
    assert tuple(module.config.attention_head_dim) == (1, 1, 1)
    assert _max_error(_residuals(module, odd, data), reference) < 1e-5
    # without it the family's rule gives other heads, and other numbers
    (tmp_path / "canny" / "config.json").unlink()
    plain = build_controlnet(read_state_dict(path), path)
    assert tuple(plain.config.attention_head_dim) == (1, 1, 2)
    assert _max_error(_residuals(plain, odd, data), reference) > 1e-4


def test_a_config_json_of_another_network_is_ignored(tmp_path):
    net = fx.cached_controlnet("sd15")
    path = fx.write_controlnet(net, tmp_path, "ldm")
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel", "cross_attention_dim": 2048,
                                                      "block_out_channels": [320, 640, 1280]}))
    module = build_controlnet(read_state_dict(path), path)
    assert module.config.cross_attention_dim == net.module.config.cross_attention_dim


def test_a_shuffle_file_pools_its_residuals_as_comfyui(tmp_path):
    net = fx.cached_controlnet("sd15")
    path = fx.write_controlnet(net, tmp_path, "ldm", name="control_v11e_sd15_shuffle.safetensors")
    module = build_controlnet(read_state_dict(path), path)
    assert module.config.global_pool_conditions is True
    data = fx.inputs(net)
    down, mid = AppliedControl(ControlNet(module, Family.SD1), data["hint"]).residuals(
        data["x_in"], data["timestep"], 1.0, data["context"], None, model_sampling.discrete())
    assert mid.shape[-2:] == (1, 1) and all(d.shape[-2:] == (1, 1) for d in down)


def test_files_that_are_not_controlnets_are_refused_naming_what_was_found(tmp_path):
    with pytest.raises(ModelFileError, match=r"not a ControlNet.*found 2 tensors under conv_first: 2"):
        detect.detect({"conv_first.weight": (64, 3, 3, 3), "conv_first.bias": (64,)}, "x.safetensors")
    with pytest.raises(ModelFileError, match="Control-LoRA"):
        detect.detect({"lora_controlnet": (0,), "input_hint_block.0.weight": (16, 3, 3, 3)}, "c.safetensors")
    with pytest.raises(ModelFileError, match="T2I-Adapter"):
        detect.detect({"adapter.body.0.resnets.0.block1.weight": (320, 320, 3, 3)}, "t2i.safetensors")
    # a checkpoint (a UNet, no hint encoder) is not a ControlNet either
    from tests.diffusion_fixtures import cached_checkpoint

    with pytest.raises(ModelFileError, match=r"not a ControlNet.*model: "):
        detect.detect(shapes_of(cached_checkpoint("sd15").state_dict), "sd15.safetensors")


def test_a_file_missing_weights_is_refused_naming_them(tmp_path):
    state = fx.cached_controlnet("sd15").ldm_state()
    del state["control_model.zero_convs.1.0.weight"]
    with pytest.raises(ModelFileError, match=r"ControlNet weights do not fit: missing 1 \(controlnet_down_blocks.1"):
        build_controlnet(state, "broken.safetensors")
