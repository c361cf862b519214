"""AuraFlow files (AuraFlow's own MMDiT names, alone or all-in-one) detected from shapes, built into diffusers'
``AuraFlowTransformer2DModel`` and called the way ComfyUI calls AuraFlow."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from tests import auraflow_fixtures, diffusion_fixtures, sd3_fixtures
from visionatrix.diffusion.checkpoints.detect import shapes_of, shapes_of_file
from visionatrix.diffusion.dit import auraflow
from visionatrix.diffusion.sampling.model_sampling import FlowSchedule
from visionatrix.errors import ModelFileError


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _built(all_in_one=False):
    checkpoint = auraflow_fixtures.cached_checkpoint(all_in_one)
    info = auraflow.detect_auraflow(shapes_of(checkpoint.state_dict))
    return checkpoint, auraflow.build_auraflow(checkpoint.state_dict, info)


def test_detects_sizes_and_components_from_the_file_header(tmp_path):
    checkpoint = auraflow_fixtures.cached_checkpoint(all_in_one=True)
    path = sd3_fixtures.write(checkpoint.state_dict, tmp_path / "auraflow_v03.safetensors")
    info = auraflow.detect_auraflow(shapes_of_file(path), path)
    assert (info.prefix, info.hidden, info.heads, info.head_width) == ("model.diffusion_model.", 512, 2, 256)
    assert (info.depth, info.single_depth, info.in_channels, info.out_channels) == (1, 1, 4, 4)
    assert (info.context_dim, info.pos_embed_max_size, info.patch_size) == (64, 64, 2)
    assert info.components == {"transformer": "model.diffusion_model.", "vae": "vae.",
                               "pile_t5xl": "text_encoders.pile_t5xl.transformer."}
    assert auraflow.auraflow_diffusers_config(info) == auraflow_fixtures.TINY
    alone = auraflow.detect_auraflow(shapes_of(auraflow_fixtures.cached_checkpoint().state_dict))
    assert alone.prefix == "" and alone.components == {"transformer": ""}


@pytest.mark.parametrize("all_in_one", [False, True])
def test_built_transformer_computes_what_the_original_computes(all_in_one):
    checkpoint, model = _built(all_in_one)
    assert not any(p.is_meta for p in model.parameters())
    inputs = auraflow_fixtures.inputs(model.config)
    with torch.no_grad():
        expected = checkpoint.transformer(**inputs).sample
        got = model(**inputs).sample
    assert got.shape == (2, 4, 8, 8)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_reverse_map_round_trips_through_diffusers_converter():
    from diffusers.loaders.single_file_utils import convert_auraflow_transformer_checkpoint_to_diffusers

    original = auraflow_fixtures.cached_checkpoint().transformer.state_dict()
    converted = convert_auraflow_transformer_checkpoint_to_diffusers(
        auraflow_fixtures.aura_from_diffusers(original))
    assert set(converted) == set(original)
    for key, value in original.items():
        assert torch.equal(converted[key], value), key


def test_real_size_config_comes_back_from_its_shapes():
    from diffusers import AuraFlowTransformer2DModel

    with torch.device("meta"):
        model = AuraFlowTransformer2DModel(**auraflow_fixtures.REAL)
    shapes = shapes_of(auraflow_fixtures.aura_from_diffusers(model.state_dict()))
    info = auraflow.detect_auraflow({"model.diffusion_model." + key: shape for key, shape in shapes.items()})
    assert (info.hidden, info.heads, info.depth, info.single_depth, info.context_dim) == (3072, 12, 4, 32, 2048)
    assert auraflow.auraflow_diffusers_config(info) == auraflow_fixtures.REAL


def test_predict_is_the_module_output_in_float32_at_the_comfyui_timestep():
    checkpoint, model = _built()
    inputs = auraflow_fixtures.inputs(model.config)
    with torch.no_grad():
        expected = checkpoint.transformer(**inputs).sample
        got = auraflow.predict(model, inputs["hidden_states"], inputs["timestep"], inputs["encoder_hidden_states"])
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    sigma = torch.tensor([0.5])
    assert FlowSchedule(shift=auraflow.SHIFT, multiplier=auraflow.MULTIPLIER).timestep(sigma) == sigma
    assert (auraflow.SHIFT, auraflow.MULTIPLIER) == (1.73, 1.0)


def test_time_embedding_scales_the_timestep_by_1000_as_auraflow_own_embedder():
    _, model = _built()
    t = torch.tensor([0.93, 0.21])
    frequencies = 1000 * torch.exp(-math.log(10000) * torch.arange(128) / 128)
    angles = t[:, None] * frequencies[None]
    reference = model.time_step_proj(torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1))
    with torch.no_grad():
        # float32 angles up to 1000 rad: the products' rounding differs by ~1e-5
        torch.testing.assert_close(model.time_step_proj(model.time_step_embed(t)), reference.detach(),
                                   atol=1e-4, rtol=1e-3)


def test_predict_places_positions_pads_and_interpolates_as_comfyui():
    checkpoint, model = _built()
    generator = torch.Generator().manual_seed(4)
    context = torch.randn(1, 5, 64, generator=generator)
    t = torch.tensor([0.4])
    # 7 x 8 latent: padded circularly to 8 x 8 (4 x 4 patches, centred alike by both), the padded row cropped off
    x = torch.randn(1, 4, 7, 8, generator=generator)
    padded = torch.nn.functional.pad(x, (0, 0, 0, 1), mode="circular")
    with torch.no_grad():
        expected = checkpoint.transformer(padded, context, t).sample[:, :, :7]
        torch.testing.assert_close(auraflow.predict(model, x, t, context), expected, atol=1e-5, rtol=1e-5)
    # 6 x 8 latent: 3 x 4 patches; ComfyUI starts the rows at (8 - 3) // 2 = 2, diffusers at 8 // 2 - 3 // 2 = 3
    x = torch.randn(1, 4, 6, 8, generator=generator)
    shifted = copy.deepcopy(checkpoint.transformer)
    with torch.no_grad():
        grid = shifted.pos_embed.pos_embed.reshape(1, 8, 8, -1)
        shifted.pos_embed.pos_embed.copy_(torch.roll(grid, shifts=1, dims=1).reshape(1, 64, -1))
        torch.testing.assert_close(auraflow.predict(model, x, t, context), shifted(x, context, t).sample,
                                   atol=1e-5, rtol=1e-5)
    # 20 x 20 latent: 10 x 10 patches, more than the 8 x 8 grid: the grid is stretched bilinearly to 10 x 10
    x = torch.randn(1, 4, 20, 20, generator=generator)
    stretched = auraflow_fixtures.build_transformer({"pos_embed_max_size": 100})
    grid = checkpoint.transformer.pos_embed.pos_embed.reshape(1, 8, 8, -1).movedim(-1, 1)
    grid = torch.nn.functional.interpolate(grid, (10, 10), mode="bilinear").movedim(1, -1).reshape(1, 100, -1)
    stretched.load_state_dict({**checkpoint.transformer.state_dict(), "pos_embed.pos_embed": grid})
    with torch.no_grad():
        torch.testing.assert_close(auraflow.predict(model, x, t, context), stretched(x, context, t).sample,
                                   atol=1e-5, rtol=1e-5)


def test_a_context_mask_zeroes_the_masked_rows():
    _, model = _built()
    generator = torch.Generator().manual_seed(5)
    x, context = torch.randn(1, 4, 8, 8, generator=generator), torch.randn(1, 5, 64, generator=generator)
    mask = torch.tensor([[1, 1, 1, 0, 0]])
    zeroed = context.clone()
    zeroed[:, 3:] = 0
    t = torch.tensor([0.6])
    with torch.no_grad():
        torch.testing.assert_close(auraflow.predict(model, x, t, context, context_mask=mask),
                                   auraflow.predict(model, x, t, zeroed))


def test_stored_half_precision_is_kept_and_predict_returns_float32():
    checkpoint = auraflow_fixtures.cached_checkpoint()
    half = {key: value.to(torch.bfloat16) for key, value in checkpoint.state_dict.items()}
    model = auraflow.build_auraflow(half, auraflow.detect_auraflow(shapes_of(half)))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    inputs = auraflow_fixtures.inputs(model.config)
    with torch.no_grad():
        got = auraflow.predict(model, inputs["hidden_states"], inputs["timestep"], inputs["encoder_hidden_states"])
        expected = checkpoint.transformer(**inputs).sample
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=0.15, rtol=0.1)


def test_files_that_are_not_a_usable_auraflow_are_refused_naming_the_problem():
    sd15 = diffusion_fixtures.cached_checkpoint("sd15").state_dict
    with pytest.raises(ModelFileError, match=r"not an AuraFlow transformer.*model: \d+"):
        auraflow.detect_auraflow(shapes_of(sd15), "sd15.safetensors")
    state = dict(auraflow_fixtures.cached_checkpoint().state_dict)
    info = auraflow.detect_auraflow(shapes_of(state))
    cut = {k: v for k, v in state.items() if k != "single_layers.0.attn.w1k.weight"}
    with pytest.raises(ModelFileError, match=r"missing 1 \(single_layers\.0\.attn\.w1k\.weight\)"):
        auraflow.build_auraflow(cut, info, "cut.safetensors")
    with pytest.raises(ModelFileError, match=r"unexpected 1 \(double_layers\.0\.extra\.weight\)"):
        auraflow.build_auraflow({**state, "double_layers.0.extra.weight": torch.zeros(1)}, info)
    bad = {**state, "cond_seq_linear.weight": torch.zeros(512, 32)}
    with pytest.raises(ModelFileError, match=r"wrong shape 1 \(context_embedder\.weight\)"):
        auraflow.build_auraflow(bad, info, "bad.safetensors")
    shapes = shapes_of(state)
    with pytest.raises(ModelFileError, match="hidden width 384 is not a multiple of the head width 256"):
        auraflow.detect_auraflow(shapes | {"init_x_linear.weight": (384, 16)})
    with pytest.raises(ModelFileError, match=r"positional_encoding has shape \[1, 60, 512\]"):
        auraflow.detect_auraflow(shapes | {"positional_encoding": (1, 60, 512)})
    with pytest.raises(ModelFileError, match="MLP width 1024 is not the family's 1536"):
        auraflow.detect_auraflow(shapes | {"double_layers.0.mlpX.c_fc1.weight": (1024, 512)})
