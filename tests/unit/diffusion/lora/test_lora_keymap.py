"""LoRA module names of every family and format find the weight they name: the UNet's LDM names agree with the
fixtures' own diffusers->LDM map (SD1.5, SD2, SDXL, the refiner), old diffusers attention-processor names, SD2's
and the SDXL refiner's text encoders, A1111 half-precision alphas."""

from __future__ import annotations

import pytest
import torch

from tests import diffusion_fixtures, lora_fixtures
from visionatrix.diffusion.lora import group_modules, lora_patches
from visionatrix.diffusion.lora.keymap import build_index, ldm_paths, normalize


@pytest.mark.parametrize("kind", ["sd15", "sd2", "sdxl", "sdxl_refiner"])
def test_ldm_names_agree_with_the_fixtures_reverse_map(kind):
    unet = diffusion_fixtures.cached_checkpoint(kind).unet
    expected = lora_fixtures.unet_ldm_names(unet)
    weights = {key.removesuffix(".weight") for key, p in unet.named_parameters() if p.ndim >= 2}
    assert ldm_paths(unet) == {path: expected[path] for path in weights}


def test_sdxl_kohya_names_are_ldm_paths():
    unet = diffusion_fixtures.cached_checkpoint("sdxl").unet
    index = build_index({"unet": unet})
    # tiny SDXL: level 1 is input_blocks 3 (resnet + attention) and 4 (downsampler), as in the fixture's LDM file
    assert index["lora_unet_input_blocks_3_1_transformer_blocks_0_attn1_to_q"] == (
        "unet", "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight")
    assert index["lora_unet_input_blocks_4_0_op"] == ("unet", "down_blocks.1.downsamplers.0.conv.weight")
    assert index["lora_unet_output_blocks_1_0_skip_connection"] == (
        "unet", "up_blocks.0.resnets.1.conv_shortcut.weight")
    assert index["diffusion_model.middle_block.1.proj_out"] == ("unet", "mid_block.attentions.0.proj_out.weight")
    assert index["lora_unet_mid_block_attentions_0_proj_out"] == ("unet", "mid_block.attentions.0.proj_out.weight")
    assert index["lycoris_mid_block_attentions_0_proj_out"] == ("unet", "mid_block.attentions.0.proj_out.weight")


@pytest.mark.parametrize(("kind", "name", "target", "key"), [
    ("sd15", "lora_te_text_model_encoder_layers_0_self_attn_q_proj", "clip_l", "encoder.layers.0.self_attn.q_proj"),
    ("sd2", "lora_te_text_model_encoder_layers_1_mlp_fc2", "open_clip", "text_model.encoder.layers.1.mlp.fc2"),
    ("sd2", "text_encoder.text_model.encoder.layers.0.self_attn.out_proj", "open_clip",
     "text_model.encoder.layers.0.self_attn.out_proj"),
    ("sdxl", "lora_te1_text_model_encoder_layers_1_self_attn_v_proj", "clip_l", "encoder.layers.1.self_attn.v_proj"),
    ("sdxl", "lora_te2_text_model_encoder_layers_1_self_attn_v_proj", "clip_g",
     "text_model.encoder.layers.1.self_attn.v_proj"),
    ("sdxl", "text_encoder_2.text_model.encoder.layers.0.mlp.fc1", "clip_g", "text_model.encoder.layers.0.mlp.fc1"),
    ("sdxl", "text_encoders.clip_g.transformer.text_projection", "clip_g", "text_projection"),
    ("sdxl", "clip_l.transformer.text_model.encoder.layers.0.mlp.fc1", "clip_l", "encoder.layers.0.mlp.fc1"),
    ("sdxl_refiner", "lora_te_text_model_encoder_layers_0_self_attn_k_proj", "clip_g",
     "text_model.encoder.layers.0.self_attn.k_proj"),
    ("sdxl_refiner", "text_encoder.text_model.encoder.layers.0.self_attn.k_proj", "clip_g",
     "text_model.encoder.layers.0.self_attn.k_proj"),
])
def test_text_encoder_names(kind, name, target, key):
    checkpoint = diffusion_fixtures.cached_checkpoint(kind)
    assert build_index({"unet": checkpoint.unet, **checkpoint.text_encoders})[name] == (target, f"{key}.weight")


def test_old_diffusers_attention_processor_files():
    unet = diffusion_fixtures.cached_checkpoint("sd15").unet
    clip = diffusion_fixtures.cached_checkpoint("sd15").text_encoders["clip_l"]
    generator = torch.Generator().manual_seed(3)
    block = "down_blocks.0.attentions.0.transformer_blocks.0"
    state = {
        f"unet.{block}.attn2.processor.to_k_lora.down.weight": torch.randn(4, 64, generator=generator),
        f"unet.{block}.attn2.processor.to_k_lora.up.weight": torch.randn(32, 4, generator=generator),
        f"{block}.attn1.processor.to_out_lora.down.weight": torch.randn(4, 32, generator=generator),
        f"{block}.attn1.processor.to_out_lora.up.weight": torch.randn(32, 4, generator=generator),
        "text_encoder.text_model.encoder.layers.0.self_attn.to_q_lora.down.weight": torch.randn(4, 64),
        "text_encoder.text_model.encoder.layers.0.self_attn.to_q_lora.up.weight": torch.randn(64, 4),
        "text_encoder.text_model.encoder.layers.1.mlp.fc1.lora_linear_layer.down.weight": torch.randn(4, 64),
        "text_encoder.text_model.encoder.layers.1.mlp.fc1.lora_linear_layer.up.weight": torch.randn(256, 4),
    }
    match = lora_patches(state, {"unet": unet, "clip_l": clip}, 1.0, 1.0)
    assert (match.matched, match.unmatched) == (4, [])
    assert {p.key for p in match.patches["unet"]} == {f"{block}.attn2.to_k.weight", f"{block}.attn1.to_out.0.weight"}
    assert {p.key for p in match.patches["clip_l"]} == {"encoder.layers.0.self_attn.q_proj.weight",
                                                        "encoder.layers.1.mlp.fc1.weight"}
    assert normalize("x.processor.to_v_lora") == "x.to_v"


def test_a1111_half_precision_alpha_and_missing_alpha():
    unet = diffusion_fixtures.cached_checkpoint("sd15").unet
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    down, up = torch.randn(8, 32), torch.randn(32, 8)
    base = {f"{name}.lora_down.weight": down.half(), f"{name}.lora_up.weight": up.half()}
    weight = dict(unet.named_parameters())["down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight"]
    expected = up.half().float() @ down.half().float()
    with_alpha = lora_patches({**base, f"{name}.alpha": torch.tensor(4.0, dtype=torch.float16)}, {"unet": unet}, 1, 1)
    torch.testing.assert_close(with_alpha.patches["unet"][0].delta(weight), expected * 0.5)
    without = lora_patches(base, {"unet": unet}, 1.0, 1.0)
    torch.testing.assert_close(without.patches["unet"][0].delta(weight), expected)


def test_keys_group_into_modules_by_role():
    modules = group_modules(["a.lora_down.weight", "a.lora_up.weight", "a.alpha", "b.lora_A.weight",
                             "b.lora_B.weight", "c.hada_w1_a", "d.lokr_w1", "x.processor.to_q_lora.down.weight",
                             "odd"])
    assert modules["a"] == {"down": "a.lora_down.weight", "up": "a.lora_up.weight", "alpha": "a.alpha"}
    assert modules["b"] == {"down": "b.lora_A.weight", "up": "b.lora_B.weight"}
    assert set(modules) == {"a", "b", "c", "d", "x.processor.to_q_lora", "odd"}
    assert modules["odd"] == {"unknown": "odd"}
