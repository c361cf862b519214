"""Seeded noise: ComfyUI's initial noise draw, the ancestral noise stream and Brownian increments."""

from __future__ import annotations

import pytest
import torch

from visionatrix.diffusion.sampling import noise


def test_prepare_noise_equals_manual_seed_then_one_randn_of_the_whole_shape():
    torch.manual_seed(1234)
    expected = torch.randn((2, 4, 8, 8))
    out = noise.prepare_noise((2, 4, 8, 8), 1234)
    assert out.dtype == torch.float32 and out.device.type == "cpu"
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert not torch.equal(noise.prepare_noise((2, 4, 8, 8), 1235), expected)


def test_prepare_noise_leaves_the_global_generator_alone():
    torch.manual_seed(7)
    expected_next = torch.rand(3)
    torch.manual_seed(7)
    noise.prepare_noise((1, 4, 4, 4), 99)
    torch.testing.assert_close(torch.rand(3), expected_next, rtol=0, atol=0)


def test_batch_index_gives_each_item_the_noise_it_had_in_the_full_batch():
    torch.manual_seed(5)
    per_item = [torch.randn((1, 4, 4, 4)) for _ in range(4)]
    out = noise.prepare_noise((2, 4, 4, 4), 5, batch_index=[3, 1])
    torch.testing.assert_close(out, torch.cat([per_item[3], per_item[1]]), rtol=0, atol=0)
    with pytest.raises(ValueError, match="batch_index"):
        noise.prepare_noise((1, 4, 4, 4), 5, batch_index=[-1])


def test_ancestral_noise_is_a_seeded_randn_stream():
    x = torch.zeros(1, 4, 4, 4)
    sampler = noise.AncestralNoiseSampler(x, seed=11)
    generator = torch.Generator().manual_seed(11)
    for _ in range(3):
        torch.testing.assert_close(sampler(torch.tensor(2.0), torch.tensor(1.0)),
                                   torch.randn(x.shape, generator=generator), rtol=0, atol=0)


def test_brownian_increments_are_deterministic_per_seed_and_unit_variance():
    x = torch.zeros(1, 4, 64, 64)
    a = noise.BrownianNoiseSampler(x, 0.03, 14.6, seed=3)(torch.tensor(5.0), torch.tensor(4.0))
    b = noise.BrownianNoiseSampler(x, 0.03, 14.6, seed=3)(torch.tensor(5.0), torch.tensor(4.0))
    c = noise.BrownianNoiseSampler(x, 0.03, 14.6, seed=4)(torch.tensor(5.0), torch.tensor(4.0))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.allclose(a, c)
    assert a.shape == x.shape and abs(float(a.std()) - 1.0) < 0.05 and abs(float(a.mean())) < 0.05


def test_brownian_increments_add_up_over_a_split_interval():
    x = torch.zeros(2, 3, 8, 8)
    sampler = noise.BrownianNoiseSampler(x, 0.1, 10.0, seed=8)
    whole = sampler(torch.tensor(6.0), torch.tensor(2.0)) * 2.0  # sqrt(|6 - 2|)
    parts = sampler(torch.tensor(6.0), torch.tensor(3.0)) * 3.0**0.5 + sampler(torch.tensor(3.0), torch.tensor(2.0))
    torch.testing.assert_close(whole, parts, rtol=1e-4, atol=1e-4)


def test_brownian_with_one_seed_per_item_draws_each_item_from_its_own_tree():
    x = torch.zeros(2, 4, 8, 8)
    batched = noise.BrownianNoiseSampler(x, 0.1, 10.0, seed=[1, 2])(torch.tensor(5.0), torch.tensor(4.0))
    single = noise.BrownianNoiseSampler(x[:1], 0.1, 10.0, seed=[2])(torch.tensor(5.0), torch.tensor(4.0))
    torch.testing.assert_close(batched[1:], single, rtol=0, atol=0)
    assert not torch.allclose(batched[0], batched[1])
