"""Flux.1 files are recognised from their keys and shapes: layout, variant and sizes; other files are refused."""

from __future__ import annotations

import pytest
import torch

from tests import diffusion_fixtures, flux_fixtures
from visionatrix.diffusion.checkpoints.detect import shapes_of, shapes_of_file
from visionatrix.diffusion.dit import flux
from visionatrix.errors import ModelFileError

EXPECTED = {
    # variant: (FluxVariant, guidance, in_channels)
    "dev": (flux.FluxVariant.DEV, True, 64),
    "schnell": (flux.FluxVariant.SCHNELL, False, 64),
    "fill": (flux.FluxVariant.FILL, True, 384),
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _bfl_shapes(variant: str = "dev", prefix: str = "") -> dict[str, tuple[int, ...]]:
    return shapes_of(flux_fixtures.diffusers_to_bfl(flux_fixtures.flux_model(variant).state_dict(), prefix))


@pytest.mark.parametrize("variant", list(EXPECTED))
def test_each_bfl_variant_is_detected_from_its_file(tmp_path, variant):
    info = flux.detect_flux(shapes_of_file(flux_fixtures.write_flux_file(tmp_path, variant)))

    kind, guidance, in_channels = EXPECTED[variant]
    assert (info.layout, info.prefix, info.variant, info.guidance) == (flux.FluxLayout.BFL, "", kind, guidance)
    assert (info.in_channels, info.out_channels) == (in_channels, 64)
    assert (info.hidden, info.heads, info.head_width, info.depth, info.single_depth) == (256, 2, 128, 1, 1)
    assert (info.mlp_ratio, info.context_dim, info.pooled_dim) == (4.0, 64, 32)
    assert info.axes_dims_rope == (16, 56, 56)
    assert info.components == {"transformer": ""}


def test_all_in_one_file_is_found_under_comfyui_prefix_with_its_components(tmp_path):
    path = flux_fixtures.write_flux_file(tmp_path, "schnell", prefix=flux_fixtures.ALL_IN_ONE_PREFIX)
    shapes = {**shapes_of_file(path), "vae.decoder.conv_in.weight": (512, 16, 3, 3),
              "text_encoders.clip_l.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
              "text_encoders.t5xxl.transformer.shared.weight": (32128, 4096)}

    info = flux.detect_flux(shapes)

    assert (info.prefix, info.variant, info.depth) == ("model.diffusion_model.", flux.FluxVariant.SCHNELL, 1)
    assert info.components == {"transformer": "model.diffusion_model.", "vae": "vae.",
                               "clip_l": "text_encoders.clip_l.transformer.",
                               "t5xxl": "text_encoders.t5xxl.transformer."}


@pytest.mark.parametrize("variant", list(EXPECTED))
def test_diffusers_layout_is_detected_with_the_same_sizes(variant):
    diffusers_info = flux.detect_flux(shapes_of(flux_fixtures.flux_model(variant).state_dict()))
    bfl_info = flux.detect_flux(_bfl_shapes(variant))

    assert diffusers_info.layout is flux.FluxLayout.DIFFUSERS
    assert flux.flux_diffusers_config(diffusers_info) == flux.flux_diffusers_config(bfl_info)
    assert diffusers_info.variant is EXPECTED[variant][0]


@pytest.mark.parametrize(("variant", "changes"), [
    ("dev", {}), ("schnell", {"guidance_embeds": False}), ("fill", {"in_channels": 384, "out_channels": 64})])
def test_real_size_files_give_the_published_config(variant, changes):
    from diffusers import FluxTransformer2DModel

    config = {**flux_fixtures.REAL, **changes}
    with torch.device("meta"):
        model = FluxTransformer2DModel(**config)
    info = flux.detect_flux(shapes_of(flux_fixtures.diffusers_to_bfl(model.state_dict())))

    assert info.variant is EXPECTED[variant][0]
    assert (info.hidden, info.heads, info.depth, info.single_depth) == (3072, 24, 19, 38)
    assert (info.context_dim, info.pooled_dim) == (4096, 768)
    assert flux.flux_diffusers_config(info) == {**config, "out_channels": 64}


def test_a_file_that_is_not_flux_is_refused_naming_its_prefixes():
    shapes = shapes_of(diffusion_fixtures.cached_checkpoint("sd15").state_dict)

    with pytest.raises(ModelFileError, match=r"not a Flux\.1 transformer.*found \d+ tensors under "
                                             r"(model|first_stage_model|cond_stage_model): \d+"):
        flux.detect_flux(shapes, "sd15.safetensors")


def test_a_width_off_the_head_rule_is_refused():
    shapes = {**_bfl_shapes(), "img_in.weight": (200, 64)}

    with pytest.raises(ModelFileError, match="hidden width 200 is not a multiple of the family's head width 128"):
        flux.detect_flux(shapes)


def test_heads_of_another_width_are_refused():
    shapes = {**_bfl_shapes(), "double_blocks.0.img_attn.norm.query_norm.scale": (64,)}

    with pytest.raises(ModelFileError, match=r"query norm has shape \[64\]; heads of width 128 expected"):
        flux.detect_flux(shapes)


def test_an_mlp_ratio_diffusers_cannot_build_is_refused():
    shapes = {**_bfl_shapes(), "double_blocks.0.img_mlp.0.weight": (768, 256)}

    with pytest.raises(ModelFileError, match=r"MLP widths 768 \(double blocks\) and 1024 .* not 4 x the hidden"):
        flux.detect_flux(shapes)


def test_unknown_input_channels_are_refused_naming_the_known_ones():
    shapes = {**_bfl_shapes(), "img_in.weight": (256, 128)}

    with pytest.raises(ModelFileError, match=r"takes 128 channels; known: 64 \(dev, schnell, Kontext\), 384"):
        flux.detect_flux(shapes, "flux1-depth-dev.safetensors")


def test_a_gap_in_the_blocks_is_refused():
    shapes = _bfl_shapes()
    shapes.update({key.replace("double_blocks.0.", "double_blocks.2."): shape
                   for key, shape in shapes.items() if key.startswith("double_blocks.0.")})

    with pytest.raises(ModelFileError, match=r"double blocks \[1\] are missing \(blocks up to 2 found\)"):
        flux.detect_flux(shapes)


def test_a_missing_size_telling_weight_is_named():
    shapes = _bfl_shapes(prefix=flux_fixtures.ALL_IN_ONE_PREFIX)
    del shapes["model.diffusion_model.vector_in.in_layer.weight"]

    with pytest.raises(ModelFileError, match=r"'model\.diffusion_model\.vector_in\.in_layer\.weight' is missing"):
        flux.detect_flux(shapes)


def test_kontext_is_told_by_name_only():
    assert flux.variant_from_filename("flux1-kontext-dev.safetensors") == "kontext"
    assert flux.variant_from_filename("flux1-dev.safetensors") is None
