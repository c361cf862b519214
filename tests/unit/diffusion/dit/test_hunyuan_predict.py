"""One HunyuanDiT network call as ComfyUI makes it, checked against diffusers' own ``HunyuanDiT2DModel.forward``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests import hunyuan_fixtures
from visionatrix.diffusion.dit import hunyuan_dit, hunyuan_dit_predict
from visionatrix.errors import InvalidInput


@pytest.fixture(scope="module", params=["v1.2", "v1.1"])
def models(request: pytest.FixtureRequest) -> tuple[torch.nn.Module, torch.nn.Module]:
    tiny = hunyuan_fixtures.cached_checkpoint(request.param)
    info = hunyuan_dit.detect_hunyuan_dit({key: tuple(value.shape) for key, value in tiny.state_dict.items()})
    return hunyuan_dit.build_hunyuan_dit(tiny.state_dict, info), tiny.transformer


def _conds(batch: int, *, t5_tokens: int = 256) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    return {
        "encoder_hidden_states": torch.randn(batch, 77, 64, generator=generator),
        "text_embedding_mask": torch.stack([(torch.arange(77) < n).long() for n in (9, 30)[:batch]]),
        "encoder_hidden_states_t5": torch.randn(batch, t5_tokens, 512, generator=generator),
        "text_embedding_mask_t5": torch.stack([(torch.arange(t5_tokens) < n).long() for n in (6, 40)[:batch]]),
    }


def test_prediction_equals_diffusers_forward_on_a_square_latent(models) -> None:
    from diffusers.models.embeddings import get_2d_rotary_pos_embed

    model, original = models
    x = torch.randn(2, 4, 12, 12, generator=torch.Generator().manual_seed(1))
    timestep = torch.tensor([999.0, 13.25])
    conds = _conds(2)

    out = hunyuan_dit_predict.predict(model, x, timestep, conds)

    rope = get_2d_rotary_pos_embed(16, ((0, 0), (32, 32)), (6, 6), output_type="pt")
    meta = torch.tensor([[96.0, 96.0, 96.0, 96.0, 0.0, 0.0]]).repeat(2, 1)  # ComfyUI: the latent's size x 8
    with torch.no_grad():
        reference = original(x, timestep, **conds, image_meta_size=meta, style=torch.zeros(2, dtype=torch.long),
                             image_rotary_emb=rope, return_dict=False)[0]
    assert out.dtype == torch.float32 and out.shape == (2, 4, 12, 12)
    assert reference.shape[1] == 8  # learned sigma: dropped by predict
    torch.testing.assert_close(out, reference[:, :4], rtol=0, atol=2e-5)


def test_image_size_condition_reaches_v1_1_only(models) -> None:
    model, _ = models
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    default = hunyuan_dit_predict.predict(model, x, torch.tensor([500.0]), _conds(1))
    sized = hunyuan_dit_predict.predict(model, x, torch.tensor([500.0]), _conds(1), height=1024, width=768)

    assert torch.equal(default, sized) is (not model.config.use_style_cond_and_image_meta_size)


def test_rotary_positions_follow_comfyuis_grid_on_wide_latents() -> None:
    """A 4 x 8 patch grid fits 32 x 32 as rows 8..24 x cols 0..32; positions: numpy linspace(endpoint=False)."""
    cos, sin = hunyuan_dit_predict.rotary_embedding(16, 4, 8, 2)

    rows = np.linspace(8, 24, 4, endpoint=False, dtype=np.float32)
    cols = np.linspace(0, 32, 8, endpoint=False, dtype=np.float32)
    grid_cols, grid_rows = np.meshgrid(cols, rows)
    freqs = 1.0 / (10000 ** (np.arange(0, 8, 2, dtype=np.float32) / 8))
    angles = [np.outer(g.reshape(-1), freqs).repeat(2, axis=1) for g in (grid_cols, grid_rows)]
    np.testing.assert_allclose(cos.numpy(), np.cos(np.concatenate(angles, axis=1)), atol=1e-6)
    np.testing.assert_allclose(sin.numpy(), np.sin(np.concatenate(angles, axis=1)), atol=1e-6)


def test_odd_latent_is_padded_to_the_patch_and_cropped_back(models) -> None:
    model, _ = models
    x = torch.randn(1, 4, 7, 9, generator=torch.Generator().manual_seed(3))

    out = hunyuan_dit_predict.predict(model, x, torch.tensor([250.0]), _conds(1))

    assert out.shape == (1, 4, 7, 9) and torch.isfinite(out).all()


def test_longer_mt5_sequence_is_accepted(models) -> None:
    model, _ = models
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4))

    out = hunyuan_dit_predict.predict(model, x, torch.tensor([250.0]), _conds(1, t5_tokens=300))

    assert out.shape == (1, 4, 8, 8)


def test_missing_or_short_conditioning_is_refused(models) -> None:
    model, _ = models
    x = torch.zeros(1, 4, 8, 8)
    conds = _conds(1)
    with pytest.raises(InvalidInput, match="text_embedding_mask_t5 missing"):
        hunyuan_dit_predict.predict(model, x, torch.tensor([1.0]), {k: v for k, v in conds.items()
                                                                    if k != "text_embedding_mask_t5"})
    with pytest.raises(InvalidInput, match="at least 77 CLIP and 256 mT5 tokens"):
        hunyuan_dit_predict.predict(model, x, torch.tensor([1.0]), _conds(1, t5_tokens=100))
