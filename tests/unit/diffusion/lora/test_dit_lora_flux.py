"""Flux LoRAs in every key format patch the diffusers transformer exactly as the same change made to the Black
Forest Labs file and then converted (fused ``qkv`` / ``linear1`` modules split over q, k, v and the MLP input, the
final modulation's halves swapped), or as diffusers+peft applies them; patches are undone bit for bit, unmatched
modules are reported, and another family's LoRA is refused naming both families."""

from __future__ import annotations

import copy
import dataclasses
import functools

import pytest
import torch

from tests import dit_lora_fixtures as fixtures
from tests import lora_fixtures
from visionatrix.diffusion.dit import flux
from visionatrix.diffusion.lora import LoraPatch, lora_patches
from visionatrix.diffusion.patches import applied
from visionatrix.errors import ModelFileError

HIDDEN = 256


def load(weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    info = flux.detect_flux({key: tuple(value.shape) for key, value in weights.items()})
    return flux.build_flux(weights, info)


@functools.cache
def base() -> torch.nn.Module:
    return load(fixtures.flux_original("dev"))


def run(model: torch.nn.Module, patches=()) -> torch.Tensor:
    with torch.no_grad(), applied(model, list(patches)):
        return model(**fixtures.flux_inputs(model)).sample


def check_against_reference(state, record, strength=1.0, rows=None, atol=2e-5):
    model = base()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    match = lora_patches(state, {"unet": model}, strength, 1.0, "flux-lora.safetensors")
    assert (match.matched, match.total, match.unmatched) == (len(record), len(record), [])
    reference = load(fixtures.patched_original(fixtures.flux_original("dev"), state, record, strength, rows))
    expected = run(reference)
    assert (expected - run(model)).abs().max() > 0.05  # the LoRA changes the output
    torch.testing.assert_close(run(model, match.patches["unet"]), expected, rtol=1e-5, atol=atol)
    assert all(torch.equal(value, before[key]) for key, value in model.state_dict().items())  # undone exactly
    return match


@pytest.mark.parametrize(("fmt", "algorithm"), [("kohya", "lora"), ("comfy", "lora"), ("bfl", "lora"),
                                                ("kohya", "loha"), ("kohya", "lokr"), ("comfy", "full")])
def test_original_names_patch_like_the_change_made_to_the_bfl_file(fmt, algorithm):
    record: fixtures.Record = {}
    state = fixtures.original_lora(fixtures.flux_original("dev"), fmt, algorithm=algorithm, record=record,
                                   biases=algorithm == "full")
    assert "double_blocks.0.img_attn.qkv.weight" in record.values()
    assert "single_blocks.0.linear1.weight" in record.values()
    assert "final_layer.adaLN_modulation.1.weight" in record.values()
    match = check_against_reference(state, record, strength=0.8)
    keys = {patch.key for patch in match.patches["unet"]}
    assert {"single_transformer_blocks.0.attn.to_q.weight", "single_transformer_blocks.0.proj_mlp.weight",
            "transformer_blocks.0.attn.add_v_proj.weight", "norm_out.linear.weight"} <= keys
    if algorithm == "full":  # the diff_b of linear1 and of the final modulation: sliced and swapped as the weights
        assert {"single_transformer_blocks.0.proj_mlp.bias", "norm_out.linear.bias"} <= keys


def test_xlabs_names_patch_like_the_change_made_to_the_bfl_file():
    record: fixtures.Record = {}
    rows: dict[str, tuple[int, int]] = {}
    state = fixtures.xlabs_lora(fixtures.flux_original("dev"), hidden=HIDDEN, record=record, rows=rows)
    check_against_reference(state, record, rows=rows)


def test_xlabs_and_diffusers_loras_equal_diffusers_with_peft():
    """diffusers' own XLabs conversion and peft layers as a cross-check (double blocks: its single-block rule is
    the same split of q, k, v)."""
    pytest.importorskip("peft")
    from diffusers.loaders.lora_conversion_utils import _convert_xlabs_flux_lora_to_diffusers

    model = base()
    xlabs = fixtures.xlabs_lora(fixtures.flux_original("dev"), hidden=HIDDEN, singles=False)
    peft = fixtures.diffusers_lora(model, seed=1)
    for state in (xlabs, peft):
        reference = copy.deepcopy(model)
        converted = _convert_xlabs_flux_lora_to_diffusers(dict(state)) if state is xlabs else dict(state)
        reference.load_lora_adapter(converted, prefix="transformer", adapter_name="test")
        match = lora_patches(state, {"unet": model}, 1.0, 1.0)
        assert match.unmatched == []
        expected = run(reference)
        assert (expected - run(model)).abs().max() > 0.05
        torch.testing.assert_close(run(model, match.patches["unet"]), expected, rtol=1e-5, atol=2e-5)


def test_diffusers_names_of_every_spelling_find_their_weight():
    model = base()
    generator = torch.Generator().manual_seed(5)
    path = "single_transformer_blocks.0.proj_out"
    rows, columns = model.get_parameter(f"{path}.weight").shape
    names = [f"transformer.{path}", path, "lora_transformer_" + path.replace(".", "_"),
             "lycoris_" + path.replace(".", "_"), "lora_unet_single_blocks_0_linear2",
             "lora_flux_single_blocks_0_linear2", "diffusion_model.single_blocks.0.linear2",
             "model.diffusion_model.single_blocks.0.linear2", "single_blocks.0.linear2"]
    for name in names:
        state = {f"{name}.lora_down.weight": torch.randn(2, columns, generator=generator),
                 f"{name}.lora_up.weight": torch.randn(rows, 2, generator=generator)}
        match = lora_patches(state, {"unet": model}, 1.0, 1.0)
        assert [patch.key for patch in match.patches["unet"]] == [f"{path}.weight"], name


@pytest.mark.parametrize("algorithm", fixtures.ALGORITHMS)
@pytest.mark.parametrize("module", ["double_blocks.0.img_attn.qkv", "single_blocks.0.linear1",
                                    "final_layer.adaLN_modulation.1"])
def test_slices_of_a_fused_module_add_up_to_the_fused_change(algorithm, module):
    weights = fixtures.flux_original("dev")
    state = fixtures.original_lora(weights, "kohya", algorithm=algorithm, only=(module,))
    model = base()
    patches = lora_patches(state, {"unet": model}, 0.7, 1.0).patches["unet"]
    assert patches and all(isinstance(patch, LoraPatch) for patch in patches)
    fused = weights[f"{module}.weight"].float()
    whole = dataclasses.replace(patches[0], rows=None, swap=False).delta(fused)
    parameters = dict(model.named_parameters())
    pieces = [patch.delta(parameters[patch.key]) for patch in patches]
    if module.startswith("final_layer"):  # diffusers keeps (scale, shift): its rows are the fused rows swapped
        (piece,) = pieces
        pieces = list(piece.chunk(2))[::-1]
    torch.testing.assert_close(torch.cat(pieces), whole, rtol=1e-6, atol=1e-6)
    expected = fixtures.textbook_delta(state, "lora_unet_" + module.replace(".", "_"), 0.7).float()
    torch.testing.assert_close(whole, expected, rtol=1e-5, atol=1e-6)


def test_dora_on_a_fused_module_rescales_each_slice_with_its_rows_of_magnitudes():
    weights = fixtures.flux_original("dev")
    name = "lora_unet_double_blocks_0_img_attn_qkv"
    state = fixtures.original_lora(weights, "kohya", only=("double_blocks.0.img_attn",))  # qkv and proj
    fused = weights["double_blocks.0.img_attn.qkv.weight"].float()
    state[f"{name}.dora_scale"] = fused.norm(dim=1, keepdim=True) * (1 + 0.1 * torch.rand(fused.shape[0], 1))
    patches = lora_patches(state, {"unet": base()}, 1.0, 1.0).patches["unet"]
    patches = [patch for patch in patches if ".attn.to_" in patch.key and "to_out" not in patch.key]
    whole = dataclasses.replace(patches[0], rows=None).delta(fused)
    parameters = dict(base().named_parameters())
    torch.testing.assert_close(torch.cat([patch.delta(parameters[patch.key]) for patch in patches]), whole,
                               rtol=1e-5, atol=1e-6)
    state[f"{name}.dora_scale"] = torch.ones(1, fused.shape[1])  # per input column: cannot be split
    match = lora_patches(state, {"unet": base()}, 1.0, 1.0)
    assert match.unmatched == [name]


def test_unmatched_modules_are_reported(caplog):
    record: fixtures.Record = {}
    state = fixtures.original_lora(fixtures.flux_original("dev"), "kohya", only=("double_blocks",), record=record)
    state["lora_unet_double_blocks_7_img_attn_qkv.lora_down.weight"] = torch.zeros(4, HIDDEN)
    state["lora_unet_double_blocks_7_img_attn_qkv.lora_up.weight"] = torch.zeros(3 * HIDDEN, 4)
    state["lora_unet_single_blocks_0_linear1.lora_down.weight"] = torch.zeros(4, HIDDEN)
    state["lora_unet_single_blocks_0_linear1.lora_up.weight"] = torch.zeros(3 * HIDDEN, 4)  # no MLP rows
    state["double_blocks.0.img_attn.norm.key_norm.scale.diff"] = torch.zeros(128)  # 1-D: not patched
    with caplog.at_level("WARNING"):
        match = lora_patches(state, {"unet": base()}, 1.0, 1.0, "partial.safetensors")
    assert sorted(match.unmatched) == sorted(["lora_unet_double_blocks_7_img_attn_qkv",
                                              "lora_unet_single_blocks_0_linear1",
                                              "double_blocks.0.img_attn.norm.key_norm.scale"])
    assert match.matched == len(record) and "partial.safetensors" in caplog.text


def test_a_lora_of_another_family_is_refused_naming_both():
    sdxl = lora_fixtures.make_lora("sdxl", "kohya", text=False)
    with pytest.raises(ModelFileError, match=r"0 of \d+ matched.*looks like a SD1/SD2/SDXL LoRA, the model is Flux"):
        lora_patches(sdxl, {"unet": base()}, 1.0, 1.0, "sdxl-lora.safetensors")
    record: fixtures.Record = {}
    state = fixtures.original_lora(fixtures.flux_original("dev"), "kohya", record=record)
    from tests import diffusion_fixtures

    with pytest.raises(ModelFileError, match="looks like a Flux LoRA, the model is SD1/SD2/SDXL"):
        lora_patches(state, {"unet": diffusion_fixtures.cached_checkpoint("sdxl").unet}, 1.0, 1.0)
