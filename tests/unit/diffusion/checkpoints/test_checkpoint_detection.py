"""Family, components and UNet shape of single-file SD checkpoints, read from key shapes alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests import diffusion_fixtures, model_fixtures
from visionatrix.diffusion.checkpoints import convert, detect, unet_config
from visionatrix.diffusion.checkpoints.detect import Family, Prediction
from visionatrix.errors import ModelFileError
from visionatrix.nodes.state_dicts import read_state_dict


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


EXPECTED = {
    # kind: (family, inpaint, text encoder components, prediction hint)
    "sd15": (Family.SD1, False, {"clip_l": "cond_stage_model.transformer."}, Prediction.EPS),
    "sd15_inpaint": (Family.SD1, True, {"clip_l": "cond_stage_model.transformer."}, Prediction.EPS),
    "sd2": (Family.SD2, False, {"open_clip": "cond_stage_model.model."}, None),
    "sdxl": (Family.SDXL, False, {"clip_l": "conditioner.embedders.0.transformer.",
                                  "clip_g": "conditioner.embedders.1.model."}, Prediction.EPS),
    "sdxl_inpaint": (Family.SDXL, True, {"clip_l": "conditioner.embedders.0.transformer.",
                                         "clip_g": "conditioner.embedders.1.model."}, Prediction.EPS),
    "sdxl_refiner": (Family.SDXL_REFINER, False, {"clip_g": "conditioner.embedders.0.model."}, Prediction.EPS),
    "playground25": (Family.SDXL, False, {"clip_l": "conditioner.embedders.0.transformer.",
                                          "clip_g": "conditioner.embedders.1.model."}, Prediction.EDM),
}


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_detect_reads_family_components_and_prediction_from_the_file_header(kind, tmp_path):
    path = diffusion_fixtures.write_checkpoint(diffusion_fixtures.cached_checkpoint(kind), tmp_path)
    info = detect.detect(detect.shapes_of_file(path), path)
    family, inpaint, encoders, prediction = EXPECTED[kind]
    assert info.family is family
    assert info.inpaint is inpaint
    assert info.components == {"unet": "model.diffusion_model.", "vae": "first_stage_model.", **encoders}
    assert info.prediction is prediction


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_detect_reads_the_unet_shape_the_fixture_was_built_with(kind):
    checkpoint = diffusion_fixtures.cached_checkpoint(kind)
    made = checkpoint.unet.config
    info = detect.detect(detect.shapes_of(checkpoint.state_dict))
    attends = tuple(name.startswith("CrossAttn") for name in made.down_block_types)
    depth = made.transformer_layers_per_block
    depth = (depth,) * len(attends) if isinstance(depth, int) else tuple(depth)
    assert info.unet == unet_config.UnetConfig(
        in_channels=made.in_channels, out_channels=made.out_channels, model_channels=made.block_out_channels[0],
        channel_mult=tuple(width // made.block_out_channels[0] for width in made.block_out_channels),
        num_res_blocks=made.layers_per_block, attention_levels=attends,
        transformer_depth=tuple(d if a else 0 for d, a in zip(depth, attends)), transformer_depth_middle=depth[-1],
        context_dim=made.cross_attention_dim, use_linear_projection=made.use_linear_projection,
        adm_in_channels=made.projection_class_embeddings_input_dim)
    assert info.addition_time_embed_dim == made.addition_time_embed_dim


REAL_UNETS = {
    # the published diffusers configs of the real models (unet/config.json), only the fields that differ
    Family.SD1: {"block_out_channels": (320, 640, 1280, 1280), "cross_attention_dim": 768, "attention_head_dim": 8},
    Family.SD2: {"block_out_channels": (320, 640, 1280, 1280), "cross_attention_dim": 1024,
                 "attention_head_dim": (5, 10, 20, 20), "use_linear_projection": True},
    Family.SDXL: {"block_out_channels": (320, 640, 1280), "cross_attention_dim": 2048,
                  "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                  "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                  "transformer_layers_per_block": (1, 2, 10), "attention_head_dim": (5, 10, 20),
                  "use_linear_projection": True, "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
                  "projection_class_embeddings_input_dim": 2816},
    Family.SDXL_REFINER: {"block_out_channels": (384, 768, 1536, 1536), "cross_attention_dim": 1280,
                          "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                               "DownBlock2D"),
                          "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                          "transformer_layers_per_block": 4, "attention_head_dim": (6, 12, 24, 24),
                          "use_linear_projection": True, "addition_embed_type": "text_time",
                          "addition_time_embed_dim": 256, "projection_class_embeddings_input_dim": 2560},
}


@pytest.mark.parametrize("family", list(REAL_UNETS))
def test_real_size_unet_shapes_give_the_family_and_a_config_building_the_same_unet(family):
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    with torch.device("meta"):  # shapes only: no memory, no time
        real = UNet2DConditionModel(**REAL_UNETS[family])
    ldm = {"model.diffusion_model." + k: v for k, v in diffusion_fixtures.unet_to_ldm(real.state_dict()).items()}
    info = detect.detect(detect.shapes_of(ldm))
    assert info.family is family
    config = convert.unet_diffusers_config(info)
    with torch.device("meta"):
        rebuilt = UNet2DConditionModel(**config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in real.state_dict().items()}
    # the heads are not in the weights: they come from the family's rule and must equal the published config
    assert rebuilt.config.attention_head_dim == real.config.attention_head_dim
    assert rebuilt.config.addition_time_embed_dim == real.config.addition_time_embed_dim
    assert set(convert_ldm_unet_checkpoint(ldm, config)) == set(real.state_dict())


def test_an_upscaler_file_is_refused_naming_the_prefixes_found(tmp_path):
    path = tmp_path / "4x-esrgan.safetensors"
    save_file(model_fixtures.esrgan_state_dict(num_filters=8, num_blocks=1), str(path))
    with pytest.raises(ModelFileError) as caught:
        detect.detect(detect.shapes_of_file(path), path)
    assert caught.value.path == str(path)
    assert "no UNet" in caught.value.reason and "model: " in caught.value.reason


def test_random_keys_are_refused_with_their_prefix_counts():
    shapes = {f"encoder.layer{i}.weight": (4, 4) for i in range(3)} | {"head.bias": (4,)}
    with pytest.raises(ModelFileError, match=r"4 tensors under encoder: 3, head: 1"):
        detect.detect(shapes, "random.safetensors")


def test_an_unknown_label_emb_width_is_refused():
    shapes = detect.shapes_of(diffusion_fixtures.cached_checkpoint("sdxl").state_dict)
    shapes["model.diffusion_model.label_emb.0.0.weight"] = (256, 700)
    with pytest.raises(ModelFileError, match="label_emb input width 700"):
        detect.detect(shapes)


def test_a_unet_whose_widths_break_the_head_rule_cannot_be_configured():
    info = detect.detect(detect.shapes_of(diffusion_fixtures.cached_checkpoint("sd2").state_dict))
    odd = unet_config.UnetConfig(**{**info.unet.__dict__, "model_channels": 48})
    with pytest.raises(ModelFileError, match="not multiples of the family's head width 64"):
        convert.unet_diffusers_config(detect.CheckpointInfo(info.family, False, info.components, None, odd))


def test_a_truncated_checkpoint_is_a_model_file_error(tmp_path):
    path = diffusion_fixtures.write_checkpoint(diffusion_fixtures.cached_checkpoint("sd15"), tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError) as from_reader:
        read_state_dict(path)
    assert from_reader.value.path == str(path)
    with pytest.raises(ModelFileError):
        detect.shapes_of_file(path)


def test_a_text_file_named_like_a_checkpoint_is_a_model_file_error(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_text("not weights")
    for read in (read_state_dict, detect.shapes_of_file):
        with pytest.raises(ModelFileError, match="not a readable safetensors file"):
            read(Path(path))


def test_the_header_lists_the_shapes_of_the_tensors_read_whole(tmp_path):
    path = diffusion_fixtures.write_checkpoint(diffusion_fixtures.cached_checkpoint("sdxl_refiner"), tmp_path)
    assert detect.shapes_of_file(path) == {k: tuple(v.shape) for k, v in read_state_dict(path).items()}


@pytest.mark.parametrize(("name", "hint"), [
    ("v2-1_768-ema-pruned.safetensors", None),
    ("sd-v2-768-v-ema.safetensors", Prediction.V),
    ("noobai-xl-vpred-1.0.safetensors", Prediction.V),
    ("playground-v2.5-1024px-aesthetic.fp16.safetensors", Prediction.EDM),
    ("sd_xl_base_1.0.safetensors", None),
])
def test_prediction_hint_from_filename(name, hint):
    assert detect.prediction_from_filename(name) is hint


def test_a_v_pred_key_marks_v_prediction():
    shapes = detect.shapes_of(diffusion_fixtures.cached_checkpoint("sd2").state_dict) | {"v_pred": ()}
    assert detect.detect(shapes).prediction is Prediction.V


def test_real_size_vae_shapes_give_a_config_building_the_same_vae():
    from diffusers import AutoencoderKL

    published = {"block_out_channels": (128, 256, 512, 512), "layers_per_block": 2, "latent_channels": 4,
                 "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4}
    with torch.device("meta"):
        real = AutoencoderKL(**published)
    ldm = {"first_stage_model." + k: v for k, v in diffusion_fixtures.vae_to_ldm(real.state_dict()).items()}
    assert ldm["first_stage_model.decoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)  # LDM: 1x1 convolutions
    config = convert.vae_diffusers_config(detect.shapes_of(ldm), "vae")
    with torch.device("meta"):
        rebuilt = AutoencoderKL(**config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in real.state_dict().items()}
