"""Text-encoder parts of Flux and SD3 LoRAs: CLIP-L (``lora_te1_``), SD3's CLIP-G (``lora_te2_``) and T5-XXL
(``lora_te3_``; ``lora_te2_`` in early Flux files), diffusers and ComfyUI names, each patching the encoder the
trainers mean, exactly as the textbook delta added to a copy."""

from __future__ import annotations

import pytest
import torch

from tests import diffusion_fixtures, lora_fixtures, sd3_fixtures
from tests import dit_lora_fixtures as fixtures
from visionatrix.diffusion.lora import lora_patches
from visionatrix.diffusion.lora.keymap import build_index
from visionatrix.diffusion.patches import applied


def sd3_encoders() -> dict[str, torch.nn.Module]:
    components = sd3_fixtures.cached_checkpoint("sd3_medium", all_in_one=True).components
    return {name: components[name] for name in ("clip_l", "clip_g", "t5xxl")}


def encode(name: str, module: torch.nn.Module, patches=()) -> torch.Tensor:
    ids = torch.tensor([[5, 9, 11, 3, 1]]) if name == "t5xxl" else torch.tensor(
        [[diffusion_fixtures.VOCAB - 2, 320, 1125, 539, diffusion_fixtures.VOCAB - 1]])
    with torch.no_grad(), applied(module, list(patches)):
        return module(input_ids=ids).last_hidden_state


def check(targets: dict[str, torch.nn.Module], state, record, strength=0.6):
    match = lora_patches(state, targets, 1.0, strength, "te-lora.safetensors")
    assert (match.matched, match.total, match.unmatched) == (len(record), len(record), [])
    assert {(target, patch.key) for target, patches in match.patches.items() for patch in patches} == set(
        record.values())
    for name, module in targets.items():
        if name == "unet" or not match.patches[name]:
            continue
        expected = encode(name, lora_fixtures.patched_copy(module, [(state, record, strength)], name))
        assert (expected - encode(name, module)).abs().max() > 0.01
        torch.testing.assert_close(encode(name, module, match.patches[name]), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("t5_prefix", ["lora_te3_", "lora_te2_"])
def test_flux_kohya_clip_l_and_t5(t5_prefix):
    encoders = sd3_encoders()
    targets = {"clip_l": encoders["clip_l"], "t5xxl": encoders["t5xxl"]}
    record: dict[str, tuple[str, str]] = {}
    state = fixtures.text_lora(targets["clip_l"], "lora_te1_", target="clip_l", record=record)
    state |= fixtures.text_lora(targets["t5xxl"], t5_prefix, target="t5xxl", record=record, seed=1)
    check(targets, state, record)


def test_sd3_kohya_te1_te2_te3_are_clip_l_clip_g_t5():
    targets = sd3_encoders()
    record: dict[str, tuple[str, str]] = {}
    state = {}
    for number, name in enumerate(("clip_l", "clip_g", "t5xxl"), start=1):
        state |= fixtures.text_lora(targets[name], f"lora_te{number}_", target=name, record=record, seed=number)
    check(targets, state, record)


@pytest.mark.parametrize(("family", "prefixes"), [
    ("sd3", {"clip_l": "text_encoder.", "clip_g": "text_encoder_2.", "t5xxl": "text_encoder_3."}),
    ("flux", {"clip_l": "text_encoder.", "t5xxl": "text_encoder_2."}),
    ("sd3", {"clip_l": "text_encoders.clip_l.transformer.", "clip_g": "text_encoders.clip_g.transformer.",
             "t5xxl": "text_encoders.t5xxl.transformer."}),
    ("flux", {"t5xxl": "t5xxl.transformer."}),
])
def test_diffusers_and_comfy_text_names(family, prefixes):
    encoders = sd3_encoders()
    targets = encoders if family == "sd3" else {"clip_l": encoders["clip_l"], "t5xxl": encoders["t5xxl"]}
    record: dict[str, tuple[str, str]] = {}
    state = {}
    for number, (name, prefix) in enumerate(prefixes.items()):
        state |= fixtures.text_lora(targets[name], prefix, kohya=False, target=name, record=record, seed=number)
    check(targets, state, record)


def test_t5_names_follow_the_clip_g_rule():
    encoders = sd3_encoders()
    path = "encoder.block.0.layer.0.SelfAttention.q"
    flux_names = build_index({"clip_l": encoders["clip_l"], "t5xxl": encoders["t5xxl"]})
    sd3_names = build_index(encoders)
    assert flux_names["lora_te2_" + path.replace(".", "_")] == ("t5xxl", f"{path}.weight")
    assert sd3_names["lora_te2_text_model_encoder_layers_0_self_attn_q_proj"][0] == "clip_g"
    assert "lora_te2_" + path.replace(".", "_") not in sd3_names
    assert sd3_names["lora_te3_" + path.replace(".", "_")] == ("t5xxl", f"{path}.weight")
