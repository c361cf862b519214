"""Single-file checkpoints converted to diffusers/transformers modules compute what the originals compute."""

from __future__ import annotations

import pytest
import torch

from tests import diffusion_fixtures
from visionatrix.diffusion.checkpoints import convert, detect
from visionatrix.errors import ModelFileError
from visionatrix.nodes.state_dicts import read_state_dict

KINDS = list(diffusion_fixtures.KINDS)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _converted(kind: str) -> convert.ConvertedCheckpoint:
    state = diffusion_fixtures.cached_checkpoint(kind).state_dict
    return convert.convert(state, detect.detect(detect.shapes_of(state)))


def _unet_inputs(unet, generator):
    config = unet.config
    kwargs = {"sample": torch.randn(2, config.in_channels, 16, 16, generator=generator),
              "timestep": torch.tensor([10.0, 700.0]),
              "encoder_hidden_states": torch.randn(2, 5, config.cross_attention_dim, generator=generator)}
    if config.addition_embed_type == "text_time":
        pooled = diffusion_fixtures.OPEN_CLIP_G["hidden_size"]  # bigG's projection; base: 6 numbers, refiner: 5
        numbers = (config.projection_class_embeddings_input_dim - pooled) // config.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {"text_embeds": torch.randn(2, pooled, generator=generator),
                                       "time_ids": torch.rand(2, numbers, generator=generator) * 1024}
    return kwargs


@pytest.mark.parametrize("kind", KINDS)
def test_converted_unet_predicts_what_the_original_predicts(kind):
    original = diffusion_fixtures.cached_checkpoint(kind).unet
    converted = _converted(kind).unet
    inputs = _unet_inputs(original, torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = original(**inputs).sample
        actual = converted(**inputs).sample
    assert expected.abs().mean() > 0.01
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["sd15", "sdxl", "playground25"])
def test_converted_vae_encodes_and_decodes_like_the_original(kind):
    original = diffusion_fixtures.cached_checkpoint(kind).vae
    converted = _converted(kind).vae
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(converted.encode(image).latent_dist.mean, original.encode(image).latent_dist.mean)
        latent = original.encode(image).latent_dist.mean
        torch.testing.assert_close(converted.decode(latent).sample, original.decode(latent).sample)


@pytest.mark.parametrize(("kind", "scaling"), [("sd15", 0.18215), ("sd2", 0.18215), ("sdxl", 0.13025),
                                               ("sdxl_refiner", 0.13025), ("playground25", 0.5)])
def test_vae_scaling_comes_from_the_family(kind, scaling):
    assert _converted(kind).vae.config.scaling_factor == scaling


def test_playground_vae_carries_its_edm_latent_statistics():
    config = _converted("playground25").vae.config
    assert config.latents_mean == pytest.approx(diffusion_fixtures.PLAYGROUND_EDM_MEAN)
    assert config.latents_std == pytest.approx(diffusion_fixtures.PLAYGROUND_EDM_STD)


@pytest.mark.parametrize(("kind", "name"), [("sd15", "clip_l"), ("sd2", "open_clip"), ("sdxl", "clip_l"),
                                            ("sdxl", "clip_g"), ("sdxl_refiner", "clip_g")])
def test_converted_text_encoder_gives_the_original_hidden_states_and_pooled_output(kind, name):
    original = diffusion_fixtures.cached_checkpoint(kind).text_encoders[name]
    converted = _converted(kind).text_encoders[name]
    assert type(converted) is type(original)
    ids = torch.randint(0, diffusion_fixtures.VOCAB - 2, (2, diffusion_fixtures.POSITIONS),
                        generator=torch.Generator().manual_seed(5))
    ids[:, 0], ids[:, -3] = diffusion_fixtures.VOCAB - 2, diffusion_fixtures.VOCAB - 1
    with torch.no_grad():
        expected = original(ids, output_hidden_states=True)
        actual = converted(ids, output_hidden_states=True)
    assert len(actual.hidden_states) == len(expected.hidden_states)  # every layer kept (penultimate is used)
    torch.testing.assert_close(actual.hidden_states[-2], expected.hidden_states[-2])
    torch.testing.assert_close(actual.last_hidden_state, expected.last_hidden_state)
    pooled = "text_embeds" if name != "clip_l" else "pooler_output"
    torch.testing.assert_close(getattr(actual, pooled), getattr(expected, pooled))


@pytest.mark.parametrize("kind", ["sd15", "sdxl", "sdxl_refiner"])
def test_reverse_maps_round_trip_through_diffusers_converters(kind):
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        convert_open_clip_checkpoint,
    )

    checkpoint = diffusion_fixtures.cached_checkpoint(kind)
    state = checkpoint.state_dict
    unet = convert_ldm_unet_checkpoint(state, dict(checkpoint.unet.config))
    _assert_same_tensors(unet, checkpoint.unet.state_dict())
    vae = convert_ldm_vae_checkpoint(state, dict(checkpoint.vae.config))
    _assert_same_tensors(vae, checkpoint.vae.state_dict())
    for name, encoder in checkpoint.text_encoders.items():
        if name == "clip_l":
            weights = {k.removeprefix("text_model."): v for k, v in convert_ldm_clip_checkpoint(state).items()}
        else:
            prefix = next(p for p, (n, _) in diffusion_fixtures.KINDS[kind]["text"].items() if n == name)
            weights = convert_open_clip_checkpoint(encoder, state, prefix=prefix)
        _assert_same_tensors(weights, encoder.state_dict())


def _assert_same_tensors(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected)
    for key, value in expected.items():
        assert torch.equal(actual[key], value), key


def test_a_checkpoint_missing_a_unet_weight_is_refused_naming_it():
    state = dict(diffusion_fixtures.cached_checkpoint("sd15").state_dict)
    info = detect.detect(detect.shapes_of(state))
    del state["model.diffusion_model.out.2.bias"]
    with pytest.raises(ModelFileError, match=r"UNet weights do not fit: missing 1 \(conv_out.bias\)"):
        convert.build_unet(state, info, "broken.safetensors")


def test_a_text_encoder_weight_of_the_wrong_shape_is_refused():
    state = dict(diffusion_fixtures.cached_checkpoint("sd15").state_dict)
    info = detect.detect(detect.shapes_of(state))
    key = "cond_stage_model.transformer.text_model.final_layer_norm.bias"
    state[key] = torch.zeros(3)
    with pytest.raises(ModelFileError, match=r"wrong shape 1 \(final_layer_norm.bias\)"):
        convert.convert(state, info, "broken.safetensors")


def test_a_file_written_and_read_back_converts_to_the_same_unet(tmp_path):
    checkpoint = diffusion_fixtures.cached_checkpoint("sdxl_inpaint")
    path = diffusion_fixtures.write_checkpoint(checkpoint, tmp_path)
    info = detect.detect(detect.shapes_of_file(path), path)
    converted = convert.build_unet(read_state_dict(path), info, path)
    _assert_same_tensors(converted.state_dict(), checkpoint.unet.state_dict())


def test_a_unet_saved_alone_without_prefix_is_detected_and_converted():
    checkpoint = diffusion_fixtures.cached_checkpoint("sdxl")
    prefix = "model.diffusion_model."
    alone = {k[len(prefix):]: v for k, v in checkpoint.state_dict.items() if k.startswith(prefix)}
    info = detect.detect(detect.shapes_of(alone), "sdxl_unet.safetensors")
    assert (info.family, info.components) == (detect.Family.SDXL, {"unet": ""})
    converted = convert.convert(alone, info, "sdxl_unet.safetensors")
    assert converted.vae is None and converted.text_encoders == {}
    _assert_same_tensors(converted.unet.state_dict(), checkpoint.unet.state_dict())


def test_extras_real_files_carry_are_ignored():
    checkpoint = diffusion_fixtures.cached_checkpoint("sdxl")
    state = dict(checkpoint.state_dict) | {
        "conditioner.embedders.0.transformer.text_model.embeddings.position_ids":
            torch.arange(diffusion_fixtures.POSITIONS)[None],
        "conditioner.embedders.1.model.logit_scale": torch.tensor(4.6),
        "alphas_cumprod": torch.linspace(1.0, 0.01, 1000),
        "model_ema.decay": torch.tensor(0.9999),
    }
    converted = convert.convert(state, detect.detect(detect.shapes_of(state)))
    for name, encoder in checkpoint.text_encoders.items():
        _assert_same_tensors(converted.text_encoders[name].state_dict(), encoder.state_dict())


def test_clip_l_in_the_older_layout_without_text_model_converts_the_same():
    checkpoint = diffusion_fixtures.cached_checkpoint("sd15")
    old, new = "cond_stage_model.transformer.text_model.", "cond_stage_model.transformer."
    state = {(new + k[len(old):] if k.startswith(old) else k): v for k, v in checkpoint.state_dict.items()}
    info = detect.detect(detect.shapes_of(state))
    assert info.components["clip_l"] == new
    converted = convert.convert(state, info)
    expected = checkpoint.text_encoders["clip_l"].state_dict()
    _assert_same_tensors(converted.text_encoders["clip_l"].state_dict(), expected)
