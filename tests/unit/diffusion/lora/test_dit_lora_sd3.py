"""SD3 / SD3.5 LoRAs (kohya and ComfyUI MMDiT names, diffusers/peft names) patch the diffusers transformer exactly
as the same change made to the MMDiT file and then converted (fused ``qkv`` split over q, k, v; SD3.5 medium's
second attention; the last context modulation and the final modulation with their halves swapped), or as
diffusers+peft applies them; the key map agrees with diffusers' own single-file converter."""

from __future__ import annotations

import copy
import functools

import pytest
import torch

from tests import dit_lora_fixtures as fixtures
from tests import sd3_fixtures
from visionatrix.diffusion.dit import sd3
from visionatrix.diffusion.lora import dit_keys, lora_patches
from visionatrix.diffusion.patches import applied

KINDS = tuple(sd3_fixtures.KINDS)


def load(weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    info = sd3.detect_sd3({key: tuple(value.shape) for key, value in weights.items()})
    return sd3.build_sd3(dict(weights), info)


@functools.cache
def base(kind: str) -> torch.nn.Module:
    return load(fixtures.sd3_original(kind))


def run(model: torch.nn.Module, patches=()) -> torch.Tensor:
    with torch.no_grad(), applied(model, list(patches)):
        return model(**fixtures.sd3_inputs(model)).sample


@pytest.mark.parametrize(("kind", "fmt", "algorithm"), [
    ("sd3_medium", "kohya", "lora"), ("sd35_large", "comfy", "lora"), ("sd35_medium", "kohya", "lora"),
    ("sd35_medium", "comfy", "lokr"), ("sd3_medium", "bfl", "loha"),
])
def test_mmdit_names_patch_like_the_change_made_to_the_mmdit_file(kind, fmt, algorithm):
    record: fixtures.Record = {}
    weights = fixtures.sd3_original(kind)
    state = fixtures.original_lora(weights, fmt, algorithm=algorithm, record=record, biases=fmt == "comfy")
    assert {"joint_blocks.0.x_block.attn.qkv.weight", "joint_blocks.1.context_block.adaLN_modulation.1.weight",
            "final_layer.adaLN_modulation.1.weight"} <= set(record.values())
    model = base(kind)
    before = {key: value.clone() for key, value in model.state_dict().items()}
    match = lora_patches(state, {"unet": model}, 0.9, 1.0, "sd3-lora.safetensors")
    assert (match.matched, match.total, match.unmatched) == (len(record), len(record), [])
    expected = run(load(fixtures.patched_original(weights, state, record, 0.9)))
    assert (expected - run(model)).abs().max() > 0.05
    torch.testing.assert_close(run(model, match.patches["unet"]), expected, rtol=1e-5, atol=2e-5)
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())
    if fmt == "comfy":  # diff_b beside the factors: the biases change too, split and swapped as the weights
        assert "transformer_blocks.1.norm1_context.linear.bias" in {patch.key for patch in match.patches["unet"]}
    if kind == "sd35_medium":
        assert "transformer_blocks.0.attn2.to_k.weight" in {patch.key for patch in match.patches["unet"]}


@pytest.mark.parametrize("kind", ["sd3_medium", "sd35_medium"])
def test_diffusers_loras_equal_diffusers_with_peft(kind):
    pytest.importorskip("peft")
    model = base(kind)
    state = fixtures.diffusers_lora(model, seed=2)
    reference = copy.deepcopy(model)
    reference.load_lora_adapter(dict(state), prefix="transformer", adapter_name="test")
    match = lora_patches(state, {"unet": model}, 1.0, 1.0)
    assert match.unmatched == []
    expected = run(reference)
    assert (expected - run(model)).abs().max() > 0.05
    torch.testing.assert_close(run(model, match.patches["unet"]), expected, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_the_mmdit_map_agrees_with_diffusers_single_file_converter(kind):
    """Each MMDiT weight, filled with its row numbers, lands where the map says (rows, halves swapped or not)."""
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    weights = fixtures.sd3_original(kind)
    numbered = {key: (torch.arange(value.shape[0], dtype=torch.float64) + 1000 * number).reshape(
        -1, *([1] * (value.ndim - 1))).expand(value.shape).clone() if value.ndim else value
        for number, (key, value) in enumerate(weights.items())}
    converted = convert_sd3_transformer_checkpoint_to_diffusers(dict(numbered))
    plain, fused = dit_keys.unet_index(base(kind))
    checked = 0
    for path in fixtures.adapted(weights):
        source = numbered[f"{path}.weight"].reshape(numbered[f"{path}.weight"].shape[0], -1)[:, 0]
        if path in fused:
            for piece in fused[path].slices:
                rows = source[piece.start:piece.stop]
                rows = torch.cat(rows.chunk(2)[::-1]) if piece.swap else rows
                assert torch.equal(converted[piece.key].reshape(len(rows), -1)[:, 0], rows), (path, piece)
        else:
            assert torch.equal(converted[plain[path]].reshape(len(source), -1)[:, 0], source), path
        checked += 1
    assert checked == len(fixtures.adapted(weights))
