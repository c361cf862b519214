"""LATENT nodes: sizes and numbers against torch's interpolation and rules written out here (bislerp per cell,
composite feathering), batch indices that keep each item's noise, and inputs never changed."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from comfy_nodes.diffusion import latent_nodes as nodes
from visionatrix.diffusion.sampling.noise import prepare_noise
from visionatrix.errors import InvalidInput


def latent(batch: int = 2, height: int = 6, width: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 4, height, width, generator=torch.Generator().manual_seed(seed))


def snapshot(value: dict) -> dict:
    return {key: item.clone() if isinstance(item, torch.Tensor) else list(item) for key, item in value.items()}


def assert_unchanged(value: dict, before: dict) -> None:
    assert set(value) == set(before)
    for key, item in before.items():
        assert torch.equal(value[key], item) if isinstance(item, torch.Tensor) else value[key] == item


def test_empty_latent_is_zeros_of_an_eighth_of_the_size():
    (out,) = nodes.EmptyLatentImage().generate(1024, 768, 3)
    assert set(out) == {"samples"}
    samples = out["samples"]
    assert samples.shape == (3, 4, 96, 128) and samples.dtype == torch.float32 and samples.device.type == "cpu"
    assert not samples.any()
    assert nodes.EmptyLatentImage().generate(1000, 517, 1)[0]["samples"].shape == (1, 4, 64, 125)
    required = nodes.EmptyLatentImage.INPUT_TYPES()["required"]
    assert {k: v[1]["default"] for k, v in required.items()} == {"width": 512, "height": 512, "batch_size": 1}
    assert required["width"][1]["min"] == 16 and required["width"][1]["step"] == 8
    assert required["batch_size"][1]["max"] == 4096


def test_set_latent_noise_mask_reshapes_the_mask_into_a_copy():
    source = {"samples": latent(), "batch_index": [3, 4]}
    before = snapshot(source)
    mask = torch.rand(2, 48, 64)
    (out,) = nodes.SetLatentNoiseMask().set_mask(source, mask)
    assert out["noise_mask"].shape == (2, 1, 48, 64) and torch.equal(out["noise_mask"][:, 0], mask)
    assert out["samples"] is source["samples"] and out["batch_index"] == [3, 4]
    assert_unchanged(source, before)
    assert nodes.SetLatentNoiseMask().set_mask(source, torch.rand(48, 64))[0]["noise_mask"].shape == (1, 1, 48, 64)


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic"])
def test_latent_upscale_equals_torch_interpolation(method):
    samples = latent()
    source = {"samples": samples, "noise_mask": torch.ones(1, 1, 4, 4)}
    (out,) = nodes.LatentUpscale().upscale(source, method, 200, 100, "disabled")
    assert torch.equal(out["samples"], F.interpolate(samples, size=(12, 25), mode=method))
    assert out["noise_mask"] is source["noise_mask"]  # resized when used
    (by,) = nodes.LatentUpscaleBy().upscale(source, method, 1.5)
    assert torch.equal(by["samples"], F.interpolate(samples, size=(9, 12), mode=method))


def test_latent_upscale_keeps_the_aspect_for_a_zero_side_and_never_goes_below_64_pixels():
    samples = latent(height=6, width=8)  # 48 x 64 pixels
    upscale = nodes.LatentUpscale().upscale
    assert upscale({"samples": samples}, "bilinear", 0, 96, "disabled")[0]["samples"].shape[-2:] == (12, 16)
    assert upscale({"samples": samples}, "bilinear", 256, 0, "disabled")[0]["samples"].shape[-2:] == (24, 32)
    assert upscale({"samples": samples}, "bilinear", 16, 16, "disabled")[0]["samples"].shape[-2:] == (8, 8)
    assert torch.equal(upscale({"samples": samples}, "bilinear", 0, 0, "disabled")[0]["samples"], samples)


def test_latent_upscale_center_crop_cuts_to_the_new_aspect_first():
    samples = latent(height=6, width=12)  # aspect 2 -> 1: 3 cells cut from each side
    (out,) = nodes.LatentUpscale().upscale({"samples": samples}, "bilinear", 64, 64, "center")
    assert torch.equal(out["samples"], F.interpolate(samples[..., :, 3:9], size=(8, 8), mode="bilinear"))
    tall = latent(height=12, width=6)
    (out,) = nodes.LatentUpscale().upscale({"samples": tall}, "area", 64, 64, "center")
    assert torch.equal(out["samples"], F.interpolate(tall[..., 3:9, :], size=(8, 8), mode="area"))


def reference_bislerp(samples: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Per output cell, written out: the source position of bilinear resampling (half-pixel centres, clamped),
    its two neighbours' channel vectors slerped (lengths lerped; equal directions keep the first, opposite ones
    lerp); width first, then height."""
    def along(x: torch.Tensor, size: int) -> torch.Tensor:  # resample the last axis
        old = x.shape[-1]
        out = torch.empty(*x.shape[:-1], size)
        for j in range(size):
            position = min(max((j + 0.5) * old / size - 0.5, 0.0), old - 1)
            low = math.floor(position)
            high, t = min(low + 1, old - 1), position - low
            for n in range(x.shape[0]):
                for i in range(x.shape[2]):
                    a, b = x[n, :, i, low].double(), x[n, :, i, high].double()
                    na, nb = a.norm(), b.norm()
                    ua = a / na if na > 0 else torch.zeros_like(a)
                    ub = b / nb if nb > 0 else torch.zeros_like(b)
                    dot = float((ua * ub).sum())
                    if dot > 1 - 1e-5:
                        value = a
                    elif dot < 1e-5 - 1:
                        value = a * (1 - t) + b * t
                    else:
                        omega = math.acos(dot)
                        value = (math.sin((1 - t) * omega) * ua + math.sin(t * omega) * ub) / math.sin(omega)
                        value = value * (na * (1 - t) + nb * t)
                    out[n, :, i, j] = value.float()
        return out

    wide = along(samples, width)
    return along(wide.transpose(-1, -2), height).transpose(-1, -2)


def test_bislerp_slerps_channel_vectors_between_neighbouring_cells():
    samples = latent(batch=1, height=3, width=4, seed=1)
    samples[0, :, 1, 1] = 0.0  # a zero vector
    samples[0, :, 2, 3] = -samples[0, :, 2, 2]  # opposite neighbours
    samples[0, :, 0, 1] = 2 * samples[0, :, 0, 0]  # same direction
    out = nodes.upscale(samples, 7, 5, "bislerp", "disabled")
    assert out.shape == (1, 4, 5, 7)
    torch.testing.assert_close(out, reference_bislerp(samples, 7, 5), atol=1e-5, rtol=1e-4)
    (node_out,) = nodes.LatentUpscale().upscale({"samples": samples}, "bislerp", 80, 72, "disabled")
    torch.testing.assert_close(node_out["samples"], reference_bislerp(samples, 10, 9), atol=1e-5, rtol=1e-4)
    (same,) = nodes.LatentUpscaleBy().upscale({"samples": samples}, "bislerp", 1.0)
    torch.testing.assert_close(same["samples"], samples, atol=1e-5, rtol=1e-5)


def test_an_unknown_upscale_method_is_named():
    with pytest.raises(InvalidInput) as caught:
        nodes.LatentUpscaleBy().upscale({"samples": latent()}, "lanczos3", 2.0)
    assert caught.value.input_name == "upscale_method"


def test_repeat_latent_batch_repeats_samples_masks_and_indices():
    source = {"samples": latent(batch=2), "noise_mask": torch.rand(2, 1, 6, 8), "batch_index": [3, 5]}
    before = snapshot(source)
    (out,) = nodes.RepeatLatentBatch().repeat(source, 3)
    assert torch.equal(out["samples"], torch.cat([source["samples"]] * 3))
    assert torch.equal(out["noise_mask"], torch.cat([source["noise_mask"]] * 3))
    assert out["batch_index"] == [3, 5, 6, 8, 9, 11]  # offset: max - min + 1 = 3
    assert_unchanged(source, before)
    single_mask = {"samples": latent(batch=2), "noise_mask": torch.rand(1, 1, 6, 8)}
    (out,) = nodes.RepeatLatentBatch().repeat(single_mask, 2)
    assert out["noise_mask"] is single_mask["noise_mask"] and "batch_index" not in out


def test_latent_from_batch_keeps_each_items_noise():
    samples = latent(batch=4)
    source = {"samples": samples, "noise_mask": torch.rand(2, 1, 6, 8)}
    before = snapshot(source)
    (out,) = nodes.LatentFromBatch().frombatch(source, 1, 2)
    assert torch.equal(out["samples"], samples[1:3]) and out["batch_index"] == [1, 2]
    cycled = torch.cat([source["noise_mask"], source["noise_mask"]])
    assert torch.equal(out["noise_mask"], cycled[1:3])
    assert_unchanged(source, before)
    # the cut batch's noise equals those items' noise in the whole batch (ComfyUI's batch_index rule)
    whole = prepare_noise(samples.shape, 42)
    assert torch.equal(prepare_noise(out["samples"].shape, 42, out["batch_index"]), whole[1:3])
    (again,) = nodes.LatentFromBatch().frombatch(out, 1, 5)  # clamped to what is there
    assert again["batch_index"] == [2] and torch.equal(again["samples"], samples[2:3])
    (late,) = nodes.LatentFromBatch().frombatch({"samples": samples}, 63, 1)
    assert late["batch_index"] == [3]


def reference_composite(to: torch.Tensor, source: torch.Tensor, x: int, y: int, feather: int) -> torch.Tensor:
    """Written out per cell: inside the pasted rectangle, the weight of the source is the product of
    (t + 1) / feather for each inner edge (not on the target's border) the cell lies within feather cells of."""
    out = to.clone()
    height, width = min(source.shape[2], to.shape[2] - y), min(source.shape[3], to.shape[3] - x)
    for i in range(height):
        for j in range(width):
            weight = 1.0
            for t in range(feather):
                factor = (t + 1) / feather
                weight *= factor if (y != 0 and i == t) else 1.0
                weight *= factor if (y + height < to.shape[2] and i == height - 1 - t) else 1.0
                weight *= factor if (x != 0 and j == t) else 1.0
                weight *= factor if (x + width < to.shape[3] and j == width - 1 - t) else 1.0
            out[:, :, y + i, x + j] = source[:, :, i, j] * weight + to[:, :, y + i, x + j] * (1 - weight)
    return out


@pytest.mark.parametrize(("x", "y", "feather"), [(16, 8, 0), (0, 0, 16), (24, 16, 16), (40, 32, 24), (200, 0, 8)])
def test_latent_composite_pastes_with_feathered_inner_edges(x, y, feather):
    to, source = latent(batch=2, height=8, width=10, seed=2), latent(batch=1, height=5, width=6, seed=3)
    target = {"samples": to, "batch_index": [0, 1]}
    before = snapshot(target)
    (out,) = nodes.LatentComposite().composite(target, {"samples": source}, x, y, feather)
    expected = reference_composite(to, source.expand(2, -1, -1, -1), x // 8, y // 8, feather // 8)
    torch.testing.assert_close(out["samples"], expected, atol=1e-6, rtol=1e-6)
    assert out["batch_index"] == [0, 1]
    assert_unchanged(target, before)


def test_latent_composite_names_a_source_that_does_not_fit():
    with pytest.raises(InvalidInput, match="batch of 3") as caught:
        nodes.LatentComposite().composite({"samples": latent(batch=2)}, {"samples": latent(batch=3)}, 0, 0, 0)
    assert caught.value.input_name == "samples_from"


def test_a_value_that_is_not_a_latent_is_named():
    with pytest.raises(InvalidInput, match="expected a LATENT") as caught:
        nodes.RepeatLatentBatch().repeat({"latent": latent()}, 2)
    assert caught.value.input_name == "samples"
