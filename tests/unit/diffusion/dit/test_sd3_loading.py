"""SD3/SD3.5 files (MMDiT layout, alone or all-in-one) detected from shapes and built into diffusers modules that
compute what the originals compute."""

from __future__ import annotations

import pytest
import torch

from tests import diffusion_fixtures, sd3_fixtures
from visionatrix.diffusion.checkpoints.detect import shapes_of, shapes_of_file
from visionatrix.diffusion.dit import sd3, sd3_components
from visionatrix.errors import ModelFileError

KINDS = list(sd3_fixtures.KINDS)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _inputs(config, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {"hidden_states": torch.randn(2, config.in_channels, 8, 12, generator=generator),
            "encoder_hidden_states": torch.randn(2, 9, config.joint_attention_dim, generator=generator),
            "pooled_projections": torch.randn(2, config.pooled_projection_dim, generator=generator),
            "timestep": torch.tensor([980.0, 120.0])}


@pytest.mark.parametrize("kind", KINDS)
def test_detects_each_variant_from_shapes(kind):
    info = sd3.detect_sd3(shapes_of(sd3_fixtures.cached_checkpoint(kind).state_dict))
    config = sd3_fixtures.KINDS[kind]
    assert info.variant == kind
    assert (info.prefix, info.hidden_size, info.depth, info.num_layers) == ("", 128, 2, 2)
    assert (info.patch_size, info.in_channels, info.out_channels) == (2, 16, 16)
    assert (info.context_dim, info.pooled_dim, info.caption_projection_dim) == (512, 384, 128)
    assert info.pos_embed_max_size == config["pos_embed_max_size"]
    assert info.qk_norm == config["qk_norm"]
    assert info.dual_attention_layers == config["dual_attention_layers"]
    assert info.components == {"transformer": ""}
    assert {k: v for k, v in sd3.sd3_diffusers_config(info).items() if k != "sample_size"} == \
        {k: v for k, v in config.items() if k != "sample_size"}


def test_all_in_one_file_lists_its_components_from_the_header(tmp_path):
    checkpoint = sd3_fixtures.cached_checkpoint("sd35_medium", all_in_one=True)
    path = sd3_fixtures.write(checkpoint.state_dict, tmp_path / "sd3.5_medium.safetensors")
    info = sd3.detect_sd3(shapes_of_file(path), path)
    assert info.prefix == "model.diffusion_model."
    assert info.components == {"transformer": "model.diffusion_model.", "vae": "first_stage_model.",
                               "clip_l": "text_encoders.clip_l.transformer.",
                               "clip_g": "text_encoders.clip_g.transformer.",
                               "t5xxl": "text_encoders.t5xxl.transformer."}
    assert info.variant is sd3.Variant.SD35_MEDIUM


@pytest.mark.parametrize(("kind", "all_in_one"), [(kind, False) for kind in KINDS] + [("sd35_large", True)])
def test_built_transformer_predicts_what_the_original_predicts(kind, all_in_one):
    checkpoint = sd3_fixtures.cached_checkpoint(kind, all_in_one)
    info = sd3.detect_sd3(shapes_of(checkpoint.state_dict))
    model = sd3.build_sd3(checkpoint.state_dict, info)
    assert not any(p.is_meta for p in model.parameters())
    inputs = _inputs(checkpoint.transformer.config)
    with torch.no_grad():
        expected = checkpoint.transformer(**inputs).sample
        got = model(**inputs).sample
    assert got.shape == (2, 16, 8, 12)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_reverse_map_round_trips_through_diffusers_converter(kind):
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    original = sd3_fixtures.cached_checkpoint(kind).transformer.state_dict()
    converted = convert_sd3_transformer_checkpoint_to_diffusers(sd3_fixtures.mmdit_from_diffusers(original))
    assert set(converted) == set(original)
    for key, value in original.items():
        assert torch.equal(converted[key], value), key


@pytest.mark.parametrize(("name", "config"), [
    ("sd35_large", {"num_layers": 38, "num_attention_heads": 38, "pos_embed_max_size": 192, "qk_norm": "rms_norm",
                    "dual_attention_layers": ()}),
    ("sd35_medium", {"num_layers": 24, "num_attention_heads": 24, "pos_embed_max_size": 384, "qk_norm": "rms_norm",
                     "dual_attention_layers": tuple(range(13))}),
])
def test_real_size_configs_come_back_from_their_shapes(name, config):
    from diffusers import SD3Transformer2DModel

    full = {"sample_size": 128, "patch_size": 2, "in_channels": 16, "out_channels": 16, "attention_head_dim": 64,
            "joint_attention_dim": 4096, "caption_projection_dim": 64 * config["num_attention_heads"],
            "pooled_projection_dim": 2048, **config}
    with torch.device("meta"):
        model = SD3Transformer2DModel(**full)
    shapes = shapes_of(sd3_fixtures.mmdit_from_diffusers(model.state_dict()))
    info = sd3.detect_sd3({"model.diffusion_model." + key: shape for key, shape in shapes.items()})
    assert info.variant == name
    assert (info.hidden_size, info.context_dim, info.pooled_dim) == (64 * config["num_attention_heads"], 4096, 2048)
    assert sd3.sd3_diffusers_config(info) == full


def test_all_in_one_components_compute_what_the_originals_compute():
    checkpoint = sd3_fixtures.cached_checkpoint("sd35_large", all_in_one=True)
    info = sd3.detect_sd3(shapes_of(checkpoint.state_dict))
    built = sd3_components.build_components(checkpoint.state_dict, info)
    original = checkpoint.components
    assert set(built) == {"clip_l", "clip_g", "t5xxl", "vae"}
    ids = torch.tensor([[49406, 320, 1125, 539, 2368, 49407, 49407]])
    with torch.no_grad():
        for name in ("clip_l", "clip_g"):
            got, expected = built[name](input_ids=ids), original[name](input_ids=ids)
            torch.testing.assert_close(got.last_hidden_state, expected.last_hidden_state, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(built["clip_g"](input_ids=ids).text_embeds,
                                   original["clip_g"](input_ids=ids).text_embeds, atol=1e-5, rtol=1e-5)
        t5_ids = torch.tensor([[5, 9, 1, 0, 0]])
        torch.testing.assert_close(built["t5xxl"](input_ids=t5_ids).last_hidden_state,
                                   original["t5xxl"](input_ids=t5_ids).last_hidden_state, atol=1e-5, rtol=1e-5)
        latent = torch.randn(1, 16, 4, 4, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(built["vae"].decode(latent).sample, original["vae"].decode(latent).sample,
                                   atol=1e-5, rtol=1e-5)
    assert (built["vae"].config.scaling_factor, built["vae"].config.shift_factor) == (1.5305, 0.0609)
    assert built["vae"].config.latent_channels == 16 and not built["vae"].config.use_quant_conv


def test_a_file_that_is_not_sd3_is_refused_naming_what_it_holds():
    state = diffusion_fixtures.cached_checkpoint("sd15").state_dict
    with pytest.raises(ModelFileError, match=r"not an SD3 transformer.*model: \d+.*first_stage_model: \d+"):
        sd3.detect_sd3(shapes_of(state), "sd15.safetensors")
    with pytest.raises(ModelFileError, match="no tensors"):
        sd3.detect_sd3({}, "empty.safetensors")


def test_scaled_fp8_files_are_detected_and_their_scales_refused_by_the_builder():
    shapes = shapes_of(sd3_fixtures.cached_checkpoint("sd35_large").state_dict)
    shapes |= {"scaled_fp8": (), "joint_blocks.0.x_block.attn.qkv.scale_weight": ()}
    info = sd3.detect_sd3(shapes, "sd3.5_large_fp8_scaled.safetensors")
    assert info.variant is sd3.Variant.SD35_LARGE
    state = dict(sd3_fixtures.cached_checkpoint("sd35_large").state_dict)
    state |= {"scaled_fp8": torch.zeros(0), "joint_blocks.0.x_block.attn.qkv.scale_weight": torch.ones(())}
    with pytest.raises(ModelFileError, match=r"scaled fp8 weights .*must be dequantized before"):
        sd3.build_sd3(state, info, "sd3.5_large_fp8_scaled.safetensors")


def test_missing_unexpected_and_misshapen_weights_are_named():
    state = dict(sd3_fixtures.cached_checkpoint("sd35_medium").state_dict)
    info = sd3.detect_sd3(shapes_of(state))
    without = {k: v for k, v in state.items() if k != "joint_blocks.1.context_block.attn.qkv.bias"}
    with pytest.raises(ModelFileError, match=r"joint_blocks\.1\.context_block\.attn\.qkv\.bias.*missing"):
        sd3.build_sd3(without, info, "cut.safetensors")
    with pytest.raises(ModelFileError, match=r"unexpected 1 \(joint_blocks\.0\.x_block\.extra\.weight\)"):
        sd3.build_sd3({**state, "joint_blocks.0.x_block.extra.weight": torch.zeros(1)}, info, "extra.safetensors")
    bad = {**state, "context_embedder.weight": torch.zeros(128, 256)}
    with pytest.raises(ModelFileError, match=r"wrong shape 1 \(context_embedder\.weight\)"):
        sd3.build_sd3(bad, info, "bad.safetensors")
    shapes = shapes_of(state) | {"x_embedder.proj.weight": (96, 16, 2, 2)}
    with pytest.raises(ModelFileError, match="hidden width 96 is not a multiple of the head width 64"):
        sd3.detect_sd3(shapes, "odd.safetensors")
    shapes = {k: v for k, v in shapes_of(state).items() if k != "y_embedder.mlp.0.weight"}
    with pytest.raises(ModelFileError, match=r"missing: y_embedder\.mlp\.0\.weight"):
        sd3.detect_sd3(shapes, "cut.safetensors")


def test_fixtures_are_the_same_for_the_same_seed():
    first, second = sd3_fixtures.build_transformer("sd3_medium"), sd3_fixtures.build_transformer("sd3_medium")
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
