"""CONDITIONING data nodes: ComfyUI's option keys and numbers, and inputs (lists, option dicts, tensors) never
changed."""

from __future__ import annotations

import pytest
import torch

from comfy_nodes.diffusion import conditioning_nodes as nodes
from visionatrix.errors import InvalidInput


def conditioning(tokens: int = 77, seed: int = 0, pooled: bool = True, **options) -> list:
    generator = torch.Generator().manual_seed(seed)
    extra = {"pooled_output": torch.randn(1, 16, generator=generator)} if pooled else {}
    return [[torch.randn(1, tokens, 32, generator=generator), {**extra, **options}]]


def snapshot(cond: list) -> list:
    return [[tensor.clone(), {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in options.items()}]
            for tensor, options in cond]


def assert_unchanged(cond: list, before: list) -> None:
    assert len(cond) == len(before)
    for (tensor, options), (old_tensor, old_options) in zip(cond, before, strict=True):
        assert torch.equal(tensor, old_tensor) and set(options) == set(old_options)
        for key, value in old_options.items():
            assert torch.equal(options[key], value) if isinstance(value, torch.Tensor) else options[key] == value


def test_combine_lists_both_conditionings():
    first, second = conditioning(seed=1), conditioning(seed=2) + conditioning(seed=3)
    before = snapshot(first), snapshot(second)
    (out,) = nodes.ConditioningCombine().combine(first, second)
    assert len(out) == 3 and out[0][0] is first[0][0] and out[2][0] is second[1][0]
    out[0][1]["area"] = (1, 1, 0, 0)
    assert_unchanged(first, before[0])
    assert_unchanged(second, before[1])


@pytest.mark.parametrize(("to_tokens", "from_tokens"), [(77, 77), (154, 77), (77, 154)])
def test_average_weights_tokens_and_pooled_outputs(to_tokens, from_tokens):
    to, source = conditioning(to_tokens, seed=1, strength=0.5), conditioning(from_tokens, seed=2)
    source += conditioning(seed=9)  # only the first entry of conditioning_from is used
    before = snapshot(to), snapshot(source)
    (out,) = nodes.ConditioningAverage().addWeighted(to, source, 0.3)
    padded = torch.zeros(1, to_tokens, 32)
    rows = min(to_tokens, from_tokens)
    padded[:, :rows] = source[0][0][:, :rows]
    torch.testing.assert_close(out[0][0], to[0][0] * 0.3 + padded * 0.7)
    torch.testing.assert_close(out[0][1]["pooled_output"],
                               to[0][1]["pooled_output"] * 0.3 + source[0][1]["pooled_output"] * 0.7)
    assert out[0][1]["strength"] == 0.5 and len(out) == 1
    assert_unchanged(to, before[0])
    assert_unchanged(source, before[1])


def test_average_takes_the_pooled_output_from_the_source_when_the_target_has_none():
    to, source = conditioning(seed=1, pooled=False), conditioning(seed=2)
    (out,) = nodes.ConditioningAverage().addWeighted(to, source, 1.0)
    torch.testing.assert_close(out[0][1]["pooled_output"], source[0][1]["pooled_output"])
    torch.testing.assert_close(out[0][0], to[0][0])


def test_concat_appends_the_first_source_entrys_tokens():
    to = conditioning(seed=1) + conditioning(seed=2)
    source = conditioning(seed=3)
    before = snapshot(to)
    (out,) = nodes.ConditioningConcat().concat(to, source)
    for (tensor, options), (original, original_options) in zip(out, to, strict=True):
        assert torch.equal(tensor, torch.cat([original, source[0][0]], dim=1)) and tensor.shape == (1, 154, 32)
        assert options is not original_options and options.keys() == original_options.keys()
    assert_unchanged(to, before)


def test_conditionings_of_different_widths_are_named():
    wide = [[torch.zeros(1, 77, 64), {}]]
    with pytest.raises(InvalidInput, match="different widths") as caught:
        nodes.ConditioningConcat().concat(conditioning(), wide)
    assert caught.value.input_name == "conditioning_from"
    with pytest.raises(InvalidInput, match="expected CONDITIONING") as caught:
        nodes.ConditioningSetTimestepRange().set_range(torch.zeros(1, 77, 32), 0.0, 1.0)
    assert caught.value.input_name == "conditioning"


def test_set_area_stores_latent_cells_height_first():
    cond = conditioning()
    before = snapshot(cond)
    (out,) = nodes.ConditioningSetArea().append(cond, 256, 135, 64, 33, 0.8)
    assert out[0][1]["area"] == (16, 32, 4, 8)
    assert out[0][1]["strength"] == 0.8 and out[0][1]["set_area_to_bounds"] is False
    assert out[0][0] is cond[0][0] and "pooled_output" in out[0][1]
    assert_unchanged(cond, before)
    required = nodes.ConditioningSetArea.INPUT_TYPES()["required"]
    assert list(required) == ["conditioning", "width", "height", "x", "y", "strength"]
    assert required["width"][1] == {"default": 64, "min": 64, "max": 16384, "step": 8}


def test_set_area_percentage_stores_fractions():
    (out,) = nodes.ConditioningSetAreaPercentage().append(conditioning(), 0.5, 0.25, 0.1, 0.2, 1.5)
    assert out[0][1]["area"] == ("percentage", 0.25, 0.5, 0.2, 0.1)
    assert out[0][1]["strength"] == 1.5 and out[0][1]["set_area_to_bounds"] is False


@pytest.mark.parametrize(("area", "bounds"), [("default", False), ("mask bounds", True)])
def test_set_mask_stores_the_mask_with_a_batch_axis(area, bounds):
    cond = conditioning()
    before = snapshot(cond)
    mask = torch.rand(64, 48)
    (out,) = nodes.ConditioningSetMask().append(cond, mask, area, 0.7)
    assert out[0][1]["mask"].shape == (1, 64, 48) and torch.equal(out[0][1]["mask"][0], mask)
    assert out[0][1]["set_area_to_bounds"] is bounds and out[0][1]["mask_strength"] == 0.7
    assert_unchanged(cond, before)
    assert list(nodes.ConditioningSetMask.INPUT_TYPES()["required"]) == ["conditioning", "mask", "strength",
                                                                          "set_cond_area"]


def test_timestep_range_sets_start_and_end_percent():
    cond = conditioning() + conditioning(seed=1)
    (out,) = nodes.ConditioningSetTimestepRange().set_range(cond, 0.2, 0.8)
    assert [(o["start_percent"], o["end_percent"]) for _, o in out] == [(0.2, 0.8), (0.2, 0.8)]
    assert all("start_percent" not in options for _, options in cond)


def test_zero_out_zeroes_the_tensor_and_pooled_output():
    cond = conditioning(area=(1, 1, 0, 0))
    before = snapshot(cond)
    (out,) = nodes.ConditioningZeroOut().zero_out(cond)
    assert torch.equal(out[0][0], torch.zeros(1, 77, 32))
    assert torch.equal(out[0][1]["pooled_output"], torch.zeros(1, 16)) and out[0][1]["area"] == (1, 1, 0, 0)
    assert_unchanged(cond, before)


def test_every_node_is_described():
    assert set(nodes.NODE_CLASS_MAPPINGS) == set(nodes.NODE_DISPLAY_NAME_MAPPINGS)
    for name, cls in nodes.NODE_CLASS_MAPPINGS.items():
        assert callable(getattr(cls(), cls.FUNCTION)), name
        assert cls.RETURN_TYPES == ("CONDITIONING",) and cls.CATEGORY and cls.DESCRIPTION
        assert cls.INPUT_TYPES()["required"]
