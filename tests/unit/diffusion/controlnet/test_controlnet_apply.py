"""AppliedControl: residuals of the links active at a sigma (start/end percent as ComfyUI), chains summed, strength,
the hint brought to the latent's size and batch, results in the input's dtype, family mismatches refused."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from tests import controlnet_fixtures as fx
from visionatrix.diffusion.checkpoints.detect import Family
from visionatrix.diffusion.controlnet import AppliedControl, ControlNet, prepare_hint
from visionatrix.diffusion.sampling import model_sampling
from visionatrix.errors import InvalidInput

MS = model_sampling.discrete()


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def sd15() -> fx.TinyControlNet:
    return fx.cached_controlnet("sd15")


@pytest.fixture(scope="module")
def other_sd15() -> fx.TinyControlNet:
    return fx.build_controlnet("sd15", seed=7)


def _net(tiny: fx.TinyControlNet, family: Family = Family.SD1) -> ControlNet:
    return ControlNet(tiny.module, family, f"{tiny.kind}.safetensors")


def _call(applied: AppliedControl, data: dict, sigma: float = 1.0, **kwargs):
    return applied.residuals(data["x_in"], data["timestep"], torch.tensor([sigma] * data["x_in"].shape[0]),
                             data["context"], data["added_cond"], MS, **kwargs)


def _direct(tiny: fx.TinyControlNet, data: dict, hint_image: torch.Tensor, scale: float = 1.0):
    batch = data["x_in"].shape[0]
    hint = hint_image.movedim(-1, 1).expand(batch, -1, -1, -1)
    return fx.direct(tiny, data["x_in"], data["timestep"], data["context"], data["added_cond"], hint, scale)


def _close(ours, reference, tol: float = 1e-5) -> bool:
    down, mid = ours
    ref_down, ref_mid = reference
    pairs = list(zip([*down, mid], [*ref_down, ref_mid], strict=True))
    return all(torch.allclose(a, b, atol=tol, rtol=0) for a, b in pairs)


def test_start_and_end_percent_bound_the_sigmas_it_acts_on(sd15):
    data = fx.inputs(sd15)
    applied = AppliedControl(_net(sd15), data["hint"], start_percent=0.25, end_percent=0.75)
    start, end = MS.percent_to_sigma(0.25), MS.percent_to_sigma(0.75)
    assert applied.sigma_range(MS) == (start, end)
    assert start > end > 0
    assert _call(applied, data, sigma=start * 1.01) == (None, None)  # before its range: the early steps
    assert _call(applied, data, sigma=end * 0.99) == (None, None)  # after it
    for sigma in (start, (start + end) / 2, end):  # inclusive at both ends, as ComfyUI
        assert _close(_call(applied, data, sigma=sigma), _direct(sd15, data, data["hint"]))


def test_the_default_range_covers_every_sigma(sd15):
    data = fx.inputs(sd15)
    applied = AppliedControl(_net(sd15), data["hint"])
    for sigma in (float(MS.sigma_max) * 10, float(MS.sigma_max), 0.5, 0.0):
        assert applied.active(sigma, MS)


def test_strength_scales_the_residuals(sd15):
    data = fx.inputs(sd15)
    ours = _call(AppliedControl(_net(sd15), data["hint"], strength=2.5), data)
    assert _close(ours, _direct(sd15, data, data["hint"], 2.5))
    unit = _direct(sd15, data, data["hint"], 1.0)
    assert _close(ours, ([2.5 * d for d in unit[0]], 2.5 * unit[1]), tol=1e-4)


def test_a_chain_sums_the_residuals_of_its_active_links(sd15, other_sd15):
    data = fx.inputs(sd15, batch=2)
    other_hint = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(5))
    first = AppliedControl(_net(sd15), data["hint"], strength=0.5)
    second = AppliedControl(_net(other_sd15), other_hint, strength=1.5, end_percent=0.5, previous=first)
    assert second.chain() == [first, second]
    a, b = _direct(sd15, data, data["hint"], 0.5), _direct(other_sd15, data, other_hint, 1.5)
    both = ([y + x for x, y in zip(a[0], b[0], strict=True)], b[1] + a[1])
    assert _close(_call(second, data, sigma=5.0), both)
    # past the second link's end only the first acts
    late = MS.percent_to_sigma(0.5) * 0.5
    assert _close(_call(second, data, sigma=late), a)
    # nothing active: nothing to add
    only_late = AppliedControl(_net(sd15), data["hint"], start_percent=0.9)
    assert _call(AppliedControl(_net(other_sd15), other_hint, start_percent=0.9, previous=only_late), data,
                 sigma=5.0) == (None, None)


def test_a_controlnet_for_another_family_is_refused(sd15):
    sdxl = fx.cached_controlnet("sdxl")
    sd_data, xl_data = fx.inputs(sd15), fx.inputs(sdxl)
    on_sd = AppliedControl(_net(sdxl, Family.SDXL), sd_data["hint"])
    with pytest.raises(InvalidInput, match=r"control_net: 'sdxl.safetensors' is a ControlNet for SDXL \(text context "
                                           r"384 wide\); the model's text context is 64 wide"):
        _call(on_sd, sd_data)
    # a real-width mismatch names the model's family
    with pytest.raises(InvalidInput, match="the model is SD1"):
        on_sd.residuals(sd_data["x_in"], sd_data["timestep"], 1.0, torch.zeros(1, 77, 768), None, MS)
    # the same width but SDXL's pooled/size conditioning missing or unexpected
    with pytest.raises(InvalidInput, match="model gives none"):
        AppliedControl(_net(sdxl, Family.SDXL), xl_data["hint"]).residuals(
            xl_data["x_in"], xl_data["timestep"], 1.0, xl_data["context"], None, MS)
    wide = torch.zeros(1, 77, 64)
    with pytest.raises(InvalidInput, match="the model is SDXL"):
        AppliedControl(_net(sd15), sd_data["hint"]).residuals(sd_data["x_in"], sd_data["timestep"], 1.0, wide,
                                                              xl_data["added_cond"], MS)


def test_sdxl_residuals_take_the_added_conditioning():
    sdxl = fx.cached_controlnet("sdxl")
    data = fx.inputs(sdxl, batch=2)
    ours = _call(AppliedControl(_net(sdxl, Family.SDXL), data["hint"], strength=0.7), data)
    assert _close(ours, _direct(sdxl, data, data["hint"], 0.7))
    assert len(ours[0]) == 6  # conv_in + 3 levels x (1 block + downsampler but the last)


def test_a_hint_of_another_size_is_centre_cropped_and_resized_nearest_exact():
    image = torch.rand(1, 48, 80, 3, generator=torch.Generator().manual_seed(1))
    hint = prepare_hint(image, 64, 64, 1)
    # 80x48 to a square: 16 columns cut off each side, then nearest-exact up to 64x64
    expected = F.interpolate(image.movedim(-1, 1)[..., :, 16:64], size=(64, 64), mode="nearest-exact")
    assert torch.equal(hint, expected)
    tall = prepare_hint(torch.rand(1, 100, 50, 3), 32, 64, 1)  # 2:1 tall -> 1:2 wide: rows cut
    assert tall.shape == (1, 3, 32, 64)
    assert torch.equal(prepare_hint(image, 48, 80, 1), image.movedim(-1, 1))  # same size: untouched


def test_the_hint_batch_is_dealt_over_the_latent_batch():
    images = torch.arange(3.0).reshape(3, 1, 1, 1).expand(3, 8, 8, 3)
    def firsts(hint):
        return hint[:, 0, 0, 0].tolist()
    assert firsts(prepare_hint(images[:1], 8, 8, 4)) == [0.0] * 4
    assert firsts(prepare_hint(images, 8, 8, 3)) == [0.0, 1.0, 2.0]
    assert firsts(prepare_hint(images, 8, 8, 2)) == [0.0, 1.0]
    assert firsts(prepare_hint(images, 8, 8, 5)) == [0.0, 1.0, 2.0, 0.0, 1.0]
    # two conditionings batched, latent batch 2 each: each gets the first two images (ComfyUI's batched_number)
    assert firsts(prepare_hint(images, 8, 8, 4, cond_count=2)) == [0.0, 1.0, 0.0, 1.0]


def test_a_hint_with_the_wrong_channels_is_refused(sd15):
    with pytest.raises(InvalidInput, match=r"image: 'sd15\.safetensors' takes 3-channel images, got 4"):
        prepare_hint(torch.rand(1, 8, 8, 4), 8, 8, 1, _net(sd15))


def test_inpainting_inputs_give_the_controlnet_the_latent_channels_only(sd15):
    data = fx.inputs(sd15)
    applied = AppliedControl(_net(sd15), data["hint"])
    nine = dict(data, x_in=torch.cat([data["x_in"], torch.rand(1, 5, 8, 8)], dim=1))
    assert _close(_call(applied, nine), _call(applied, data), tol=0)


def test_results_come_in_the_inputs_dtype_whatever_the_modules(sd15):
    half = copy.deepcopy(sd15.module).to(torch.bfloat16)
    data = fx.inputs(sd15)
    down, mid = _call(AppliedControl(ControlNet(half, Family.SD1), data["hint"]), data)
    assert mid.dtype == torch.float32 and all(d.dtype == torch.float32 for d in down)
    reference = _direct(sd15, data, data["hint"])
    assert (mid - reference[1]).abs().max() < 0.1 * reference[1].abs().max()
