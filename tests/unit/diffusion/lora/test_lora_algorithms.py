"""LyCORIS-family modules (LoCon with a Tucker core, LoHa, LoKr) and DoRA give the deltas their published
definitions give, written out here with explicit loops over the factors, on real weights of the tiny SD1.5 UNet."""

from __future__ import annotations

import torch

from tests import diffusion_fixtures
from visionatrix.diffusion.lora import lora_patches

LINEAR = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"  # [32, 32]
CONV = "down_blocks.0.resnets.0.conv1"  # [32, 32, 3, 3]
KOHYA = {LINEAR: "lora_unet_" + LINEAR.replace(".", "_"), CONV: "lora_unet_" + CONV.replace(".", "_")}


def unet():
    return diffusion_fixtures.cached_checkpoint("sd15").unet


def weight(path: str) -> torch.Tensor:
    return dict(unet().named_parameters())[f"{path}.weight"]


def delta(state: dict, path: str, strength: float = 1.0) -> torch.Tensor:
    match = lora_patches(state, {"unet": unet()}, strength, 1.0)
    assert (match.matched, match.unmatched) == (1, [])
    (patch,) = match.patches["unet"]
    assert patch.key == f"{path}.weight"
    return patch.delta(weight(path))


def rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed + sum(shape)))


def test_locon_tucker_core():
    name = KOHYA[CONV]
    down, mid, up = rand(4, 32, 1, 1), rand(4, 4, 3, 3, seed=1), rand(32, 4, 1, 1, seed=2)
    state = {f"{name}.lora_down.weight": down, f"{name}.lora_mid.weight": mid, f"{name}.lora_up.weight": up,
             f"{name}.alpha": torch.tensor(2.0)}
    expected = torch.zeros(32, 32, 3, 3)
    for a in range(4):
        for b in range(4):
            expected += up[:, a, 0, 0, None, None, None] * mid[a, b] * down[b, :, 0, 0, None, None]
    torch.testing.assert_close(delta(state, CONV, 0.5), 0.5 * 2.0 / 4 * expected, rtol=1e-5, atol=1e-5)


def test_loha_linear_and_conv():
    name = KOHYA[LINEAR]
    w1a, w1b, w2a, w2b = rand(32, 4), rand(4, 32, seed=1), rand(32, 4, seed=2), rand(4, 32, seed=3)
    state = {f"{name}.hada_w1_a": w1a, f"{name}.hada_w1_b": w1b, f"{name}.hada_w2_a": w2a, f"{name}.hada_w2_b": w2b,
             f"{name}.alpha": torch.tensor(1.0)}
    torch.testing.assert_close(delta(state, LINEAR), (w1a @ w1b) * (w2a @ w2b) / 4, rtol=1e-5, atol=1e-5)
    name = KOHYA[CONV]
    conv = {f"{name}.hada_w1_a": w1a, f"{name}.hada_w1_b": rand(4, 32 * 9, seed=4), f"{name}.hada_w2_a": w2a,
            f"{name}.hada_w2_b": rand(4, 32 * 9, seed=5)}
    expected = ((w1a @ conv[f"{name}.hada_w1_b"]) * (w2a @ conv[f"{name}.hada_w2_b"])).reshape(32, 32, 3, 3)
    torch.testing.assert_close(delta(conv, CONV), expected, rtol=1e-5, atol=1e-5)


def test_loha_tucker_cores():
    name = KOHYA[CONV]
    parts = {"hada_w1_a": rand(4, 32), "hada_w1_b": rand(4, 32, seed=1), "hada_t1": rand(4, 4, 3, 3, seed=2),
             "hada_w2_a": rand(4, 32, seed=3), "hada_w2_b": rand(4, 32, seed=4), "hada_t2": rand(4, 4, 3, 3, seed=5)}
    state = {f"{name}.{k}": v for k, v in parts.items()}

    def rebuild(core, out_factor, in_factor):  # W[o, c] = sum_ab core[a, b] * out_factor[a, o] * in_factor[b, c]
        result = torch.zeros(32, 32, 3, 3)
        for a in range(4):
            for b in range(4):
                result += out_factor[a][:, None, None, None] * in_factor[b][None, :, None, None] * core[a, b]
        return result

    expected = rebuild(parts["hada_t1"], parts["hada_w1_a"], parts["hada_w1_b"]) * rebuild(
        parts["hada_t2"], parts["hada_w2_a"], parts["hada_w2_b"])
    torch.testing.assert_close(delta(state, CONV), expected, rtol=1e-4, atol=1e-4)


def test_lokr_whole_and_factored():
    name = KOHYA[LINEAR]
    w1, w2 = rand(4, 8), rand(8, 4, seed=1)
    whole = {f"{name}.lokr_w1": w1, f"{name}.lokr_w2": w2, f"{name}.alpha": torch.tensor(7.0)}
    torch.testing.assert_close(delta(whole, LINEAR), torch.kron(w1, w2))  # alpha applies to factored sides only
    w2a, w2b = rand(8, 2, seed=2), rand(2, 4, seed=3)
    factored = {f"{name}.lokr_w1": w1, f"{name}.lokr_w2_a": w2a, f"{name}.lokr_w2_b": w2b,
                f"{name}.alpha": torch.tensor(1.0)}
    expected = torch.zeros(32, 32)
    full_w2 = w2a @ w2b
    for i in range(4):
        for j in range(8):
            expected[i * 8:(i + 1) * 8, j * 4:(j + 1) * 4] = w1[i, j] * full_w2
    torch.testing.assert_close(delta(factored, LINEAR), expected / 2, rtol=1e-5, atol=1e-5)
    name = KOHYA[CONV]
    conv = {f"{name}.lokr_w1": w1, f"{name}.lokr_w2": rand(8, 4, 3, 3, seed=4)}
    expected_conv = torch.kron(w1[:, :, None, None], conv[f"{name}.lokr_w2"])
    torch.testing.assert_close(delta(conv, CONV), expected_conv)


def test_dora_renormalises_each_output_channel():
    name = KOHYA[LINEAR]
    down, up = rand(4, 32), rand(32, 4, seed=1)
    magnitude = rand(32, 1, seed=2).abs() + 0.5
    state = {f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up, f"{name}.alpha": torch.tensor(2.0),
             f"{name}.dora_scale": magnitude}
    base = weight(LINEAR).detach()
    patched = base + 0.5 * (up @ down)
    renormalised = torch.stack([magnitude[o, 0] * patched[o] / patched[o].norm() for o in range(32)])
    torch.testing.assert_close(delta(state, LINEAR), renormalised - base, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(delta(state, LINEAR, 0.3), 0.3 * (renormalised - base), rtol=1e-5, atol=1e-5)


def test_unusable_modules_are_unmatched():
    name = KOHYA[LINEAR]
    state = {f"{name}.lora_up.weight": rand(32, 4), f"{name}.hada_w1_a": rand(32, 4),  # half a LoRA, half a LoHa
             f"{KOHYA[CONV]}.lora_down.weight": rand(4, 32, 3, 3), f"{KOHYA[CONV]}.lora_up.weight": rand(33, 4, 1, 1),
             "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": rand(4, 32),
             "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": rand(32, 4)}
    match = lora_patches(state, {"unet": unet()}, 1.0, 1.0)
    assert (match.matched, sorted(match.unmatched)) == (1, sorted([name, KOHYA[CONV]]))
