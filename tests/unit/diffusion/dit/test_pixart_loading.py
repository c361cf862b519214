"""PixArt-Sigma/Alpha files (PixArt's own layout or diffusers', alone or prefixed) detected from shapes, built into
diffusers' ``PixArtTransformer2DModel`` and called the way ComfyUI calls PixArt; its T5 prompts and schedule."""

from __future__ import annotations

import pytest
import torch

from tests import diffusion_fixtures, pixart_fixtures, sd3_fixtures
from visionatrix.diffusion.checkpoints.detect import shapes_of
from visionatrix.diffusion.dit import pixart
from visionatrix.errors import ModelFileError


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _built(kind):
    state, original = pixart_fixtures.cached_kind(kind)
    return original, pixart.build_pixart(state, pixart.detect_pixart(shapes_of(state)), f"{kind}.safetensors")


def _twin(kind, **config):
    """The fixture's weights in a diffusers module of another position config (an independent reference)."""
    from diffusers import PixArtTransformer2DModel

    original = pixart_fixtures.cached_kind(kind)[1]
    model = PixArtTransformer2DModel(**{**pixart_fixtures.KINDS[kind], **config})
    model.load_state_dict(original.state_dict())
    return model.eval()


def _micro(height, width, batch=1):
    return {"resolution": torch.tensor([[height * 8.0, width * 8.0]] * batch),
            "aspect_ratio": torch.tensor([[height / width]] * batch)}


@pytest.mark.parametrize("kind", ["sigma", "alpha"])
def test_detects_each_variant_from_shapes(kind):
    info = pixart.detect_pixart(shapes_of(pixart_fixtures.cached_kind(kind)[0]))
    assert (info.layout, info.prefix, info.variant) == ("original", "", kind)
    assert (info.hidden, info.heads, info.depth, info.patch_size) == (144, 2, 2, 2)
    assert (info.in_channels, info.out_channels, info.learned_sigma, info.context_dim) == (4, 8, True, 64)
    assert info.token_num == pixart_fixtures.TOKEN_NUM[kind]
    assert info.pe_interpolation == (2.0 if kind == "alpha" else None)
    assert pixart.pixart_diffusers_config(info) == pixart_fixtures.KINDS[kind]


@pytest.mark.parametrize("kind", ["sigma", "alpha"])
def test_built_transformer_computes_what_the_original_computes(kind):
    original, model = _built(kind)
    assert not any(t.is_meta for t in (*model.parameters(), *model.buffers()))
    inputs = pixart_fixtures.inputs(model.config)
    added = _micro(64, 64, batch=2) if kind == "alpha" else None
    with torch.no_grad():
        expected = original(**inputs, added_cond_kwargs=added).sample
        got = model(**inputs, added_cond_kwargs=added).sample
    assert got.shape == (2, 8, 64, 64)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_diffusers_layout_under_the_checkpoint_prefix_loads_as_is():
    original = pixart_fixtures.cached_kind("alpha")[1]
    state = {"model.diffusion_model." + key: value for key, value in original.state_dict().items()}
    info = pixart.detect_pixart(shapes_of(state))
    assert (info.layout, info.prefix, info.variant, info.pe_interpolation) == \
        ("diffusers", "model.diffusion_model.", "alpha", None)
    model = pixart.build_pixart(state, info)
    inputs = pixart_fixtures.inputs(model.config, batch=1)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs, added_cond_kwargs=_micro(64, 64)).sample,
                                   original(**inputs, added_cond_kwargs=_micro(64, 64)).sample)


def test_real_size_sigma_config_comes_back_from_its_shapes():
    from diffusers import PixArtTransformer2DModel

    with torch.device("meta"):
        model = PixArtTransformer2DModel(**pixart_fixtures.REAL_SIGMA)
    state = pixart_fixtures.pixart_from_diffusers(model.state_dict(), token_num=300, caption_channels=4096)
    info = pixart.detect_pixart(shapes_of(state))
    assert (info.variant, info.hidden, info.heads, info.depth, info.token_num) == ("sigma", 1152, 16, 28, 300)
    assert pixart.pixart_diffusers_config(info) == pixart_fixtures.REAL_SIGMA


def test_predict_is_eps_in_float32_with_comfyui_positions():
    original, model = _built("sigma")
    generator = torch.Generator().manual_seed(3)
    context, t = torch.randn(1, 7, 64, generator=generator), torch.tensor([500.0])
    x = torch.randn(1, 4, 128, 128, generator=generator)  # 1024 px: base grid 64, interpolation 2 (the config's)
    with torch.no_grad():
        got = pixart.predict(model, x, t, context)
        assert got.dtype == torch.float32 and got.shape == (1, 4, 128, 128)
        torch.testing.assert_close(got, original(x, context, t).sample[:, :4], atol=1e-5, rtol=1e-5)
        x = torch.randn(1, 4, 48, 80, generator=generator)  # mean side 64: base grid 32, interpolation 1 (same grid)
        reference = _twin("sigma", sample_size=64, interpolation_scale=1)
        torch.testing.assert_close(pixart.predict(model, x, t, context), reference(x, context, t).sample[:, :4],
                                   atol=1e-5, rtol=1e-5)


def test_predict_for_alpha_keeps_the_file_interpolation_and_adds_comfyui_micro_conditions():
    original, model = _built("alpha")
    generator = torch.Generator().manual_seed(4)
    x, context = torch.randn(1, 4, 48, 80, generator=generator), torch.randn(1, 7, 64, generator=generator)
    t = torch.tensor([250.0])
    reference = _twin("alpha", sample_size=64, interpolation_scale=2)
    with torch.no_grad():
        expected = reference(x, context, t, added_cond_kwargs=_micro(48, 80)).sample[:, :4]
        got = pixart.predict(model, x, t, context)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        # diffusers' own forward keeps its base grid 64 at every size: positions twice as far apart here
        assert not torch.allclose(got, original(x, context, t, added_cond_kwargs=_micro(48, 80)).sample[:, :4])
        mask = torch.tensor([[1, 1, 1, 1, 0, 0, 0]])
        masked = reference(x, context, t, added_cond_kwargs=_micro(48, 80), encoder_attention_mask=mask).sample
        torch.testing.assert_close(pixart.predict(model, x, t, context, context_mask=mask), masked[:, :4],
                                   atol=1e-5, rtol=1e-5)
    assert model.pos_embed.base_size == 64 and model.pos_embed.interpolation_scale == 2  # restored after the call


def test_stored_half_precision_is_kept():
    state = {key: value.half() for key, value in pixart_fixtures.cached_kind("sigma")[0].items()}
    model = pixart.build_pixart(state, pixart.detect_pixart(shapes_of(state)))
    assert {p.dtype for p in model.parameters()} == {torch.float16}


def test_files_that_are_not_a_usable_pixart_are_refused_naming_the_problem():
    sd15 = diffusion_fixtures.cached_checkpoint("sd15").state_dict
    with pytest.raises(ModelFileError, match=r"not a PixArt transformer.*model: \d+"):
        pixart.detect_pixart(shapes_of(sd15), "sd15.safetensors")
    state = dict(pixart_fixtures.cached_kind("sigma")[0])
    info = pixart.detect_pixart(shapes_of(state))
    cut = {k: v for k, v in state.items() if k != "blocks.1.cross_attn.kv_linear.bias"}
    with pytest.raises(ModelFileError, match=r"missing 1 \(blocks\.1\.cross_attn\.kv_linear\.bias\)"):
        pixart.build_pixart(cut, info, "cut.safetensors")
    with pytest.raises(ModelFileError, match=r"unexpected 1 \(blocks\.0\.attn\.q_norm\.weight\)"):
        pixart.build_pixart({**state, "blocks.0.attn.q_norm.weight": torch.ones(144)}, info)
    with pytest.raises(ModelFileError, match=r"wrong shape 1 \(caption_projection\.linear_1\.weight\)"):
        pixart.build_pixart({**state, "y_embedder.y_proj.fc1.weight": torch.zeros(144, 32)}, info)
    with pytest.raises(ModelFileError, match="hidden width 150 is not a multiple of the head width 72"):
        pixart.detect_pixart(shapes_of(state) | {"x_embedder.proj.weight": (150, 4, 2, 2)})


def test_schedule_is_linear_betas_as_diffusers_linear_ddpm():
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(beta_start=0.0001, beta_end=0.02, beta_schedule="linear", num_train_timesteps=1000)
    expected = ((1 - scheduler.alphas_cumprod) / scheduler.alphas_cumprod) ** 0.5
    torch.testing.assert_close(pixart.pixart_sigmas(), expected.float(), atol=0, rtol=1e-4)  # diffusers: float32


def test_prompts_are_unpadded_t5_tokens_and_weights_interpolate_from_padding(tmp_path):
    from visionatrix.diffusion.text.t5_tokenizer import t5_tokenizer

    model = sd3_fixtures.build_t5()
    tokenizer = t5_tokenizer(sd3_fixtures.write_tokenizer(tmp_path / "t5"))

    def hidden(ids):
        with torch.no_grad():
            return model(input_ids=torch.tensor([ids])).last_hidden_state

    torch.testing.assert_close(pixart.encode_pixart(model, tokenizer, "a photo of a cat"), hidden([4, 5, 6, 4, 7, 1]))
    assert pixart.encode_pixart(model, tokenizer, "").shape == (1, 1, 512)
    got = pixart.encode_pixart(model, tokenizer, "a (red:1.5) cat")
    weights = torch.tensor([1, 1.5, 1, 1])[None, :, None]
    plain, empty = hidden([4, 8, 7, 1]), hidden([0, 0, 0, 0])
    torch.testing.assert_close(got, empty + (plain - empty) * weights)
