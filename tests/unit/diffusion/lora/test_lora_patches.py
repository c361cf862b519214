"""LoRA files in every key format patch the tiny SD1.5 and SDXL networks exactly as the textbook formula (and, where
peft is installed, as diffusers+peft) does; patches are undone bit for bit, stack, scale, and a LoRA for another
model is refused naming how many of its modules matched."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from tests import diffusion_fixtures, lora_fixtures
from visionatrix.diffusion.lora import LoraFile, group_modules, lora_patches
from visionatrix.diffusion.patches import applied
from visionatrix.errors import ModelFileError
from visionatrix.nodes.model_manager import model_bytes


def converted(kind: str) -> Any:
    """The tiny checkpoint's modules: diffusers/transformers modules with the parameter names our single-file
    converter gives (the node tests load through the converter itself)."""
    checkpoint = diffusion_fixtures.cached_checkpoint(kind)
    return SimpleNamespace(unet=checkpoint.unet, text_encoders=checkpoint.text_encoders)


def targets_of(kind: str) -> dict[str, torch.nn.Module]:
    modules = converted(kind)
    return {"unet": modules.unet, **modules.text_encoders}


def unet_inputs(unet: torch.nn.Module, seed: int = 1) -> dict:
    generator = torch.Generator().manual_seed(seed)
    config = unet.config
    inputs = {"sample": torch.randn(1, config.in_channels, 16, 16, generator=generator), "timestep": 500,
              "encoder_hidden_states": torch.randn(1, 5, config.cross_attention_dim, generator=generator)}
    if config.addition_embed_type == "text_time":
        pooled = diffusion_fixtures.OPEN_CLIP_G["hidden_size"]
        numbers = (config.projection_class_embeddings_input_dim - pooled) // config.addition_time_embed_dim
        inputs["added_cond_kwargs"] = {"text_embeds": torch.randn(1, pooled, generator=generator),
                                       "time_ids": torch.rand(1, numbers, generator=generator) * 1024}
    return inputs


def run_unet(unet: torch.nn.Module, patches=(), seed: int = 1) -> torch.Tensor:
    with torch.no_grad(), applied(unet, list(patches)):
        return unet(**unet_inputs(unet, seed)).sample


def encode(module: torch.nn.Module, patches=()) -> torch.Tensor:
    ids = torch.tensor([[diffusion_fixtures.VOCAB - 2, 320, 1125, 539, 5000, diffusion_fixtures.VOCAB - 1]])
    with torch.no_grad(), applied(module, list(patches)):
        out = module(input_ids=ids, output_hidden_states=True)
    return torch.cat([out.hidden_states[-2], out.last_hidden_state], dim=-1)


CASES = [(kind, fmt, layers) for kind in ("sd15", "sdxl") for fmt in lora_fixtures.FORMATS
         for layers in ("attention", "all")]


@pytest.mark.parametrize(("kind", "fmt", "layers"), CASES)
def test_every_module_of_every_format_matches_the_weight_it_was_made_for(kind, fmt, layers):
    record: dict[str, tuple[str, str]] = {}
    state = lora_fixtures.make_lora(kind, fmt, layers=layers, record=record)
    match = lora_patches(state, targets_of(kind), 1.0, 1.0, "test.safetensors")
    assert (match.matched, match.total, match.unmatched) == (len(record), len(record), [])
    found = {(target, patch.key) for target, patches in match.patches.items() for patch in patches}
    assert found == set(record.values())


@pytest.mark.parametrize(("kind", "fmt", "layers"), [case for case in CASES if case[2] == "all"])
def test_patched_unet_equals_the_textbook_reference(kind, fmt, layers):
    record: dict[str, tuple[str, str]] = {}
    state = lora_fixtures.make_lora(kind, fmt, layers=layers, record=record)
    unet = converted(kind).unet
    match = lora_patches(state, {"unet": unet}, 0.8, 1.0)
    reference = lora_fixtures.patched_copy(unet, [(state, record, 0.8)], "unet")
    expected = run_unet(reference)
    assert (expected - run_unet(unet)).abs().max() > 0.05  # the LoRA changes the output
    torch.testing.assert_close(run_unet(unet, match.patches["unet"]), expected, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
def test_patched_text_encoders_equal_the_textbook_reference(kind):
    record: dict[str, tuple[str, str]] = {}
    state = lora_fixtures.make_lora(kind, "kohya", record=record)
    targets = targets_of(kind)
    match = lora_patches(state, targets, 1.0, 0.7)
    for name, module in converted(kind).text_encoders.items():
        assert match.patches[name]
        expected = encode(lora_fixtures.patched_copy(module, [(state, record, 0.7)], name))
        assert (expected - encode(module)).abs().max() > 0.01
        torch.testing.assert_close(encode(module, match.patches[name]), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
@pytest.mark.parametrize("fmt", ["kohya", "diffusers"])
def test_patched_unet_equals_diffusers_with_peft(kind, fmt):
    """diffusers' own LoRA loading (its key conversion, peft layers) is the reference where peft is installed."""
    pytest.importorskip("peft")
    pytest.importorskip("accelerate")
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    unet = converted(kind).unet
    state = lora_fixtures.make_lora(kind, fmt, layers="all", text=False)
    pipeline = StableDiffusionXLPipeline if kind == "sdxl" else StableDiffusionPipeline
    options = {"unet_config": unet.config} if kind == "sdxl" else {}
    weights, alphas = pipeline.lora_state_dict(dict(state), **options)[:2]
    reference = copy.deepcopy(unet)
    reference.load_lora_adapter(weights, network_alphas=alphas, prefix="unet", adapter_name="test")
    match = lora_patches(state, {"unet": unet}, 1.0, 1.0)
    torch.testing.assert_close(run_unet(unet, match.patches["unet"]), run_unet(reference), rtol=1e-5, atol=1e-4)


def test_applied_patches_are_undone_bit_for_bit():
    targets = targets_of("sdxl")
    before = {name: {k: v.detach().clone() for k, v in module.state_dict().items()} for name, module in targets.items()}
    match = lora_patches(lora_fixtures.make_lora("sdxl", "kohya", layers="all"), targets, 1.3, -0.6)
    for name, module in targets.items():
        with applied(module, match.patches[name]):
            changed = [k for k, v in module.state_dict().items() if not torch.equal(v, before[name][k])]
            assert len(changed) == len(match.patches[name])
        assert all(torch.equal(v, before[name][k]) for k, v in module.state_dict().items())


def test_two_loras_stack():
    unet = converted("sd15").unet
    first_record: dict[str, tuple[str, str]] = {}
    second_record: dict[str, tuple[str, str]] = {}
    first = lora_fixtures.make_lora("sd15", "kohya", seed=1, record=first_record)
    second = lora_fixtures.make_lora("sd15", "comfy", layers="all", seed=2, record=second_record)
    patches = [*lora_patches(first, {"unet": unet}, 1.0, 1.0).patches["unet"],
               *lora_patches(second, {"unet": unet}, -0.5, 1.0).patches["unet"]]
    reference = lora_fixtures.patched_copy(unet, [(first, first_record, 1.0), (second, second_record, -0.5)], "unet")
    torch.testing.assert_close(run_unet(unet, patches), run_unet(reference), rtol=1e-5, atol=2e-5)


def test_strength_scales_the_delta_and_zero_gives_no_patches():
    unet = converted("sd15").unet
    state = lora_fixtures.make_lora("sd15", "kohya", layers="all")
    weights = dict(unet.named_parameters())
    full = {p.key: p.delta(weights[p.key]) for p in lora_patches(state, {"unet": unet}, 1.0, 1.0).patches["unet"]}
    for strength in (0.5, -2.0):
        for patch in lora_patches(state, {"unet": unet}, strength, 1.0).patches["unet"]:
            torch.testing.assert_close(patch.delta(weights[patch.key]), strength * full[patch.key])
    zero = lora_patches(state, targets_of("sd15"), 0.0, 1.0)
    assert zero.patches["unet"] == [] and zero.patches["clip_l"] and zero.matched == zero.total


def test_conv_lora_delta_is_the_flattened_product_reshaped():
    unet = converted("sd15").unet
    state = lora_fixtures.make_lora("sd15", "kohya", layers="all", alpha=3.0)
    name = "lora_unet_down_blocks_0_resnets_0_conv1"
    assert state[f"{name}.lora_down.weight"].shape == (4, 32, 3, 3)
    patch = next(p for p in lora_patches(state, {"unet": unet}, 1.0, 1.0).patches["unet"]
                 if p.key == "down_blocks.0.resnets.0.conv1.weight")
    weight = dict(unet.named_parameters())[patch.key]
    up, down = state[f"{name}.lora_up.weight"][:, :, 0, 0], state[f"{name}.lora_down.weight"]
    expected = 3.0 / 4 * torch.einsum("or,rikl->oikl", up, down)
    torch.testing.assert_close(patch.delta(weight), expected)


def test_linear_factors_fit_a_1x1_conv_and_conv_factors_fit_a_linear_layer():
    unet = converted("sd15").unet  # SD1: proj_in / proj_out are 1x1 convolutions
    assert dict(unet.named_parameters())["down_blocks.0.attentions.0.proj_in.weight"].ndim == 4
    generator = torch.Generator().manual_seed(5)
    state = {
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.randn(4, 32, generator=generator),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.randn(32, 4, generator=generator),
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight":
            torch.randn(4, 32, 1, 1, generator=generator),
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight":
            torch.randn(32, 4, 1, 1, generator=generator),
    }
    match = lora_patches(state, {"unet": unet}, 1.0, 1.0)
    assert match.matched == 2
    weights = dict(unet.named_parameters())
    for patch in match.patches["unet"]:
        assert patch.delta(weights[patch.key]).shape == weights[patch.key].shape


def test_a_lora_for_another_model_is_refused_naming_the_count():
    state = lora_fixtures.make_lora("sdxl", "kohya", text=False)  # (SDXL's CLIP-L is SD1's: its text part fits)
    total = len(group_modules(state))
    with pytest.raises(ModelFileError, match=rf"no LoRA key matches this model \(0 of {total} matched; e\.g\. lora_"):
        lora_patches(state, targets_of("sd15"), 1.0, 1.0, "xl.safetensors")
    with pytest.raises(ModelFileError, match="0 of 1 matched"):
        lora_patches({"something.else": torch.zeros(2)}, targets_of("sd15"), 1.0, 1.0)


def test_partial_matches_are_reported(caplog):
    state = lora_fixtures.make_lora("sd15", "kohya")
    state["lora_unet_no_such_block.lora_down.weight"] = torch.zeros(4, 8)
    state["lora_unet_no_such_block.lora_up.weight"] = torch.zeros(8, 4)
    wrong = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_k"
    state[f"{wrong}.lora_down.weight"] = torch.zeros(4, 17)  # factors that do not fit the weight
    with caplog.at_level("WARNING"):
        match = lora_patches(state, targets_of("sd15"), 1.0, 1.0, "partial.safetensors")
    assert sorted(match.unmatched) == sorted(["lora_unet_no_such_block", wrong])
    assert match.matched == match.total - 2
    assert "partial.safetensors" in caplog.text and "lora_unet_no_such_block" in caplog.text


def test_text_only_loras_leave_the_model_alone_and_model_only_targets_ignore_text():
    state = lora_fixtures.make_lora("sd15", "kohya")
    match = lora_patches(state, {"unet": converted("sd15").unet}, 1.0, 1.0)
    assert match.patches["unet"] and match.unmatched and all(n.startswith("lora_te_") for n in match.unmatched)


def test_lora_file_holds_moves_and_accounts_its_tensors():
    state = lora_fixtures.make_lora("sd15", "kohya")
    lora = LoraFile(state)
    assert set(lora.keys()) == set(state) and all(torch.equal(lora[k], v) for k, v in state.items())
    assert model_bytes(lora) == sum(v.numel() * v.element_size() for v in state.values())
    lora.to(dtype=torch.float16)
    match = lora_patches(lora, targets_of("sd15"), 1.0, 1.0)
    assert match.matched == match.total
    patch = match.patches["unet"][0]
    weight = dict(converted("sd15").unet.named_parameters())[patch.key]
    assert patch.delta(weight).dtype == torch.float32  # the factors moved with the file; math stays float32
