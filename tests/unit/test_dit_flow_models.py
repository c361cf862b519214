"""The test helpers that place tiny model files for a flow (``tests/flow_models.py``, ``tests/dit_flow_files.py``,
``tests/scaled_fp8_files.py``): which file stands for each catalog model of the Flux / SD3.5 / DiT corpus flows, and
the scaled fp8 converter against the project's own reader of such files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests import flow_models, scaled_fp8_files
from tests.corpus import VIXFLOWS

EXPECTED = {
    "flux1_dev": {"unet_name": "flux_dev", "clip_name1": "t5xxl", "clip_name2": "clip_l", "vae_name": "flux_vae",
                  "lora_name": "flux_lora_comfy", "": "t5_tokenizer"},
    "flux1_kontext": {"unet_name": "flux_dev"},
    "flux1_schnell_inpaint": {"unet_name": "flux_schnell"},
    "flux1_extend": {"unet_name": "flux_fill", "clip_name1": "clip_l", "clip_name2": "t5xxl_fp8"},
    "sd3_5_large": {"ckpt_name": "sd35_large", "clip_name2": "clip_g"},
    "sd3_5_large_8bit": {"ckpt_name": "sd35_large_fp8"},
    "sd3_5_medium": {"ckpt_name": "sd35_medium"},
    "auraflow": {"ckpt_name": "auraflow", "": "llama_tokenizer"},
    "pixart_e": {"unet_name": "pixart_sigma", "vae_name": "vae", "clip_name": "t5xxl_fp8"},
    "hunyuan_dit": {"ckpt_name": "hunyuan_dit", "": "hydit_clip_tokenizer"},
    "juggernaut_xl": {"ckpt_name": "sdxl", "lora_name": "lora", "vae_name": "vae"},
}


@pytest.mark.parametrize("flow", sorted(EXPECTED))
def test_each_catalog_model_gets_the_tiny_file_of_its_kind(flow: str):
    models = flow_models.corpus_flow_models(VIXFLOWS / f"{flow}.json")
    family = flow_models.flow_family(models)
    kinds = {str(model["input"]): flow_models.model_kind(model, family) for model in models}
    assert {name: kinds.get(name) for name in EXPECTED[flow]} == EXPECTED[flow]


def test_the_sketch_flows_loras_take_their_catalog_files_formats():
    models = flow_models.corpus_flow_models(VIXFLOWS / "sketch_pencil.json")
    assert flow_models.flow_family(models) == "flux"
    loras = {model["filename"]: flow_models.model_kind(model, "flux") for model in models
             if model["input"] == "lora_name"}
    assert loras == {"shou_xin.safetensors": "flux_lora_kohya",
                     "alimama-creative-FLUX.1-Turbo-Alpha.safetensors": "flux_lora_diffusers"}


def test_a_model_no_tiny_file_stands_for_is_an_error():
    with pytest.raises(ValueError, match="no tiny model stands for"):
        flow_models.model_kind({"input": "unet_name", "value": "wan2.1_t2v.safetensors",
                                "types": ["diffusion_models"]})


def test_t5s_tokenizer_goes_beside_a_t5_file_the_catalog_implies_nothing_for(tmp_path: Path):
    model = {"input": "clip_name", "value": "t5xxl_fp8_e4m3fn.safetensors", "types": ["text_encoders"]}
    written = flow_models.write_flow_models([model], tmp_path / "models", tmp_path / "cache")
    folder = tmp_path / "models" / "text_encoders"
    assert written == [folder / "t5xxl_fp8_e4m3fn.safetensors", folder / "t5_tokenizer" / "tokenizer.json"]
    assert all(path.is_file() for path in written)


def test_scaled_fp8_files_read_back_as_their_dequantized_weights():
    from visionatrix.diffusion.checkpoints import fp8

    generator = torch.Generator().manual_seed(0)
    prefix = scaled_fp8_files.PREFIX
    state = {prefix + "blocks.0.linear.weight": torch.randn(16, 8, generator=generator) * 0.02,
             prefix + "blocks.0.linear.bias": torch.randn(16, generator=generator),
             prefix + "x_embedder.proj.weight": torch.randn(4, 2, 2, 2, generator=generator),
             "first_stage_model.decoder.conv_in.weight": torch.randn(4, 16, 3, 3, generator=generator),
             "first_stage_model.decoder.mid.attn_1.q.weight": torch.randn(4, 4, generator=generator)}
    scaled = scaled_fp8_files.scaled_fp8(state)
    key = prefix + "blocks.0.linear.weight"
    assert scaled[key].dtype == torch.float8_e4m3fn and scaled[prefix + "scaled_fp8"].dtype == torch.float8_e4m3fn
    assert scaled[prefix + "blocks.0.linear.scale_weight"].dtype == torch.float32
    assert float(scaled[key].to(torch.float32).abs().max()) == torch.finfo(torch.float8_e4m3fn).max
    untouched = [prefix + "blocks.0.linear.bias", prefix + "x_embedder.proj.weight",
                 "first_stage_model.decoder.conv_in.weight", "first_stage_model.decoder.mid.attn_1.q.weight"]
    assert all(scaled[name] is state[name] for name in untouched)
    assert fp8.is_scaled_fp8(scaled) and fp8.fp8_dtype_of(scaled) == torch.float8_e4m3fn
    read = fp8.dequantize_scaled_fp8(scaled, dtype=torch.float32, path="test")
    assert set(read) == set(state)
    torch.testing.assert_close(read[key], scaled_fp8_files.dequantized(scaled)[key], rtol=0, atol=0)
    relative = (read[key] - state[key]).abs() / state[key].abs().max()
    assert 0 < float(relative.max()) <= 2 ** -4   # e4m3: 3 mantissa bits
