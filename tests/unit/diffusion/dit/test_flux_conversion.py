"""Flux.1 files become diffusers ``FluxTransformer2DModel`` modules that compute what the originals compute; our
width-generic key map agrees with diffusers' real-size converter."""

from __future__ import annotations

import pytest
import torch

from tests import flux_fixtures
from visionatrix.diffusion.checkpoints.detect import shapes_of
from visionatrix.diffusion.dit import flux
from visionatrix.errors import ModelFileError
from visionatrix.nodes.state_dicts import read_state_dict

VARIANTS = list(flux_fixtures.VARIANTS)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _load(state_dict):
    return flux.build_flux(state_dict, flux.detect_flux(shapes_of(state_dict)))


def _assert_predicts_like_the_original(model, variant):
    original = flux_fixtures.flux_model(variant)
    inputs = flux_fixtures.flux_inputs(flux_fixtures.flux_config(variant))
    with torch.no_grad():
        expected = original(**inputs, return_dict=False)[0]
        got = model(**inputs, return_dict=False)[0]
    assert got.shape == (1, flux_fixtures.IMAGE_SIDE ** 2, 64)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_bfl_file_loads_to_a_module_that_predicts_what_the_original_predicts(tmp_path, variant):
    model = _load(read_state_dict(flux_fixtures.write_flux_file(tmp_path, variant)))

    assert not model.training
    assert dict(model.config) | flux_fixtures.flux_config(variant) == dict(model.config)
    _assert_predicts_like_the_original(model, variant)


def test_all_in_one_file_loads_its_transformer(tmp_path):
    path = flux_fixtures.write_flux_file(tmp_path, "dev", prefix=flux_fixtures.ALL_IN_ONE_PREFIX)

    _assert_predicts_like_the_original(_load(read_state_dict(path)), "dev")


def test_diffusers_layout_loads_too():
    state_dict = {key: value.clone() for key, value in flux_fixtures.flux_model("schnell").state_dict().items()}

    _assert_predicts_like_the_original(_load(state_dict), "schnell")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float8_e4m3fn])
def test_weights_keep_their_stored_dtype(dtype):
    bfl = flux_fixtures.diffusers_to_bfl(flux_fixtures.flux_model("dev").state_dict())
    state_dict = {key: value.to(dtype) for key, value in bfl.items()}

    model = _load(state_dict)

    assert {parameter.dtype for parameter in model.parameters()} == {dtype}


def _real_bfl(config_changes=None):
    from diffusers import FluxTransformer2DModel

    with torch.device("meta"):
        model = FluxTransformer2DModel(**{**flux_fixtures.REAL, **(config_changes or {})})
    return model, flux_fixtures.diffusers_to_bfl(model.state_dict())


@pytest.mark.parametrize("changes", [{}, {"guidance_embeds": False}, {"in_channels": 384, "out_channels": 64}])
def test_real_size_key_map_equals_diffusers_converter_and_fits_the_real_module(changes):
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    model, bfl = _real_bfl(changes)
    ours = flux.convert_bfl_weights(bfl, flux.detect_flux(shapes_of(bfl)))
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(bfl))

    assert shapes_of(ours) == shapes_of(theirs) == shapes_of(model.state_dict())


def test_real_width_tensors_are_cut_as_diffusers_cuts_them():
    """One double and one single block at the real width, every row numbered uniquely. The conversion only cuts and
    reorders rows (dim 0), so each 2-D tensor keeps a single column: the row counts are the real ones."""
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    _, bfl_meta = _real_bfl({"num_layers": 1, "num_single_layers": 1})
    info = flux.detect_flux(shapes_of(bfl_meta))
    numbered, start = {}, 0
    for key, tensor in sorted(bfl_meta.items()):
        rows = tensor.shape[0]
        numbered[key] = torch.arange(start, start + rows, dtype=torch.float64).reshape(rows, *([1] * (tensor.ndim - 1)))
        start += rows

    ours = flux.convert_bfl_weights(numbered, info)
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(numbered))

    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key


def test_an_unknown_weight_is_refused_naming_it():
    bfl = flux_fixtures.diffusers_to_bfl(flux_fixtures.flux_model("dev").state_dict())
    bfl["scaled_fp8"] = torch.zeros(0)

    with pytest.raises(ModelFileError, match=r"flux1-dev\.safetensors: Flux transformer weights do not fit: "
                                             r"unexpected 1 \(scaled_fp8\)"):
        flux.build_flux(bfl, flux.detect_flux(shapes_of(bfl)), "flux1-dev.safetensors")


def test_a_missing_weight_is_refused_naming_it():
    bfl = flux_fixtures.diffusers_to_bfl(flux_fixtures.flux_model("dev").state_dict())
    del bfl["single_blocks.0.linear2.bias"]

    with pytest.raises(ModelFileError, match=r"missing 1 \(single_blocks\.0\.linear2\.bias\)"):
        _load(bfl)


def test_a_misshapen_weight_is_refused_naming_it():
    bfl = flux_fixtures.diffusers_to_bfl(flux_fixtures.flux_model("dev").state_dict())
    bfl["double_blocks.0.txt_mlp.2.weight"] = torch.zeros(256, 512)

    with pytest.raises(ModelFileError, match=r"wrong shape 1 \(transformer_blocks\.0\.ff_context\.net\.2\.weight\)"):
        _load(bfl)


def test_a_diffusers_layout_file_with_a_stray_weight_is_refused():
    state_dict = dict(flux_fixtures.flux_model("schnell").state_dict())
    state_dict["pos_embed.proj.weight"] = torch.zeros(1)

    with pytest.raises(ModelFileError, match=r"unexpected 1 \(pos_embed\.proj\.weight\)"):
        _load(state_dict)


def test_diffusers_converter_cannot_cut_a_narrow_model_which_is_why_the_map_is_ours():
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    bfl = flux_fixtures.diffusers_to_bfl(flux_fixtures.flux_model("schnell").state_dict())

    with pytest.raises(RuntimeError, match="split"):
        convert_flux_transformer_checkpoint_to_diffusers(bfl)
