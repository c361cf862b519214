"""KSampler on the tiny SD1.5 and SDXL checkpoints against a reference computed here from the diffusers/transformers
modules the files were made from and the published update rules (Karras et al. 2022 Euler and ancestral Euler;
Lu et al. DPM-Solver++(2M)), with ComfyUI's noise (manual_seed + one CPU randn) and diffusers' own sigma spacing
(linspace for "normal", Karras for "karras")."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import EulerDiscreteScheduler

from comfy_nodes.diffusion.loaders import CheckpointLoaderSimple
from comfy_nodes.diffusion.sampling_nodes import KSampler
from comfy_nodes.diffusion.text_nodes import CLIPTextEncode
from tests import diffusion_fixtures
from visionatrix.diffusion.text.chunks import tokenize_prompt

POSITIVE, NEGATIVE = "a photo of a cat", "blurry, low quality"
STEPS, CFG, SEED = 4, 6.5, 42
LATENT = (1, 4, 16, 16)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _ids(text: str, kind: str) -> torch.Tensor:
    (chunk,) = tokenize_prompt(text, kind)
    return torch.tensor([[token for token, _ in chunk]])


def reference_conds(kind: str, text: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The prompt's conditioning straight from the fixture's encoder modules."""
    tiny = diffusion_fixtures.cached_checkpoint(kind)
    with torch.no_grad():
        if kind == "sd15":
            return tiny.text_encoders["clip_l"](input_ids=_ids(text, "clip_l")).last_hidden_state, None
        low = tiny.text_encoders["clip_l"](input_ids=_ids(text, "clip_l"), output_hidden_states=True)
        high = tiny.text_encoders["clip_g"](input_ids=_ids(text, "clip_g"), output_hidden_states=True)
        return torch.cat([low.hidden_states[-2], high.hidden_states[-2]], dim=-1), high.text_embeds


def reference_sigmas(scheduler: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigmas ending in 0, matching timesteps) from diffusers' Euler scheduler on SD's scaled-linear betas."""
    options = {"use_karras_sigmas": True} if scheduler == "karras" else {"timestep_spacing": "linspace"}
    sched = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", **options)
    sched.set_timesteps(STEPS)
    return sched.sigmas.float(), sched.timesteps.float()


def reference_run(kind: str, sampler: str, scheduler: str) -> torch.Tensor:
    tiny = diffusion_fixtures.cached_checkpoint(kind)
    sigmas, timesteps = reference_sigmas(scheduler)
    cond, pooled = reference_conds(kind, POSITIVE)
    uncond, unpooled = reference_conds(kind, NEGATIVE)
    added = None
    if pooled is not None:
        size = [LATENT[2] * 8, LATENT[3] * 8]
        time_ids = torch.tensor([[*size, 0, 0, *size]] * 2, dtype=torch.float32)
        added = {"text_embeds": torch.cat([pooled, unpooled]), "time_ids": time_ids}

    def denoise(x: torch.Tensor, i: int) -> torch.Tensor:
        sigma = sigmas[i]
        x_in = (x / (sigma**2 + 1) ** 0.5).repeat(2, 1, 1, 1)
        with torch.no_grad():
            eps = tiny.unet(x_in, timesteps[i], encoder_hidden_states=torch.cat([cond, uncond]),
                            added_cond_kwargs=added).sample
        d_cond, d_uncond = (x - eps * sigma).chunk(2)
        return d_uncond + (d_cond - d_uncond) * CFG

    x = torch.randn(LATENT, generator=torch.Generator().manual_seed(SEED)) * math.sqrt(1 + float(sigmas[0]) ** 2)
    ancestral = torch.Generator().manual_seed(SEED)
    previous = None
    for i in range(STEPS):
        sigma, nxt = sigmas[i], sigmas[i + 1]
        d = denoise(x, i)
        if sampler == "euler":
            x = x + (x - d) / sigma * (nxt - sigma)
        elif sampler == "euler_ancestral":
            up = min(float(nxt), float((nxt**2 * (sigma**2 - nxt**2) / sigma**2) ** 0.5))
            down = (nxt**2 - up**2) ** 0.5
            x = x + (x - d) / sigma * (down - sigma)
            if nxt > 0:
                x = x + torch.randn(x.shape, generator=ancestral) * up
        else:  # dpmpp_2m
            t, t_next = -sigma.log(), -nxt.log() if nxt > 0 else None
            if t_next is None:
                x = d
            else:
                h = t_next - t
                estimate = d
                if previous is not None:
                    r = (t - (-sigmas[i - 1].log())) / h
                    estimate = (1 + 1 / (2 * r)) * d - (1 / (2 * r)) * previous
                x = (nxt / sigma) * x - torch.expm1(-h) * estimate
        previous = d
    return x / {"sd15": 0.18215, "sdxl": 0.13025}[kind]


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
@pytest.mark.parametrize(("sampler", "scheduler"), [("euler", "normal"), ("dpmpp_2m", "karras"),
                                                    ("euler_ancestral", "normal")])
def test_ksampler_matches_a_direct_diffusers_loop(node_ctx, kind, sampler, scheduler):
    model, clip, _vae = CheckpointLoaderSimple().load_checkpoint(f"{kind}.safetensors")
    (positive,) = CLIPTextEncode().encode(clip, POSITIVE)
    (negative,) = CLIPTextEncode().encode(clip, NEGATIVE)
    (out,) = KSampler().sample(model, SEED, STEPS, CFG, sampler, scheduler, positive, negative,
                               {"samples": torch.zeros(LATENT)})
    expected = reference_run(kind, sampler, scheduler)
    torch.testing.assert_close(out["samples"], expected, rtol=2e-4, atol=2e-4 * float(expected.abs().max()))


def test_text_conditioning_matches_the_encoders_called_directly(node_ctx):
    _model, clip, _vae = CheckpointLoaderSimple().load_checkpoint("sdxl.safetensors")
    ((cond, options),) = CLIPTextEncode().encode(clip, POSITIVE)[0]
    expected, pooled = reference_conds("sdxl", POSITIVE)
    torch.testing.assert_close(cond, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(options["pooled_output"], pooled, rtol=1e-5, atol=1e-5)


def test_the_same_seed_gives_the_same_latent_and_another_seed_another(node_ctx):
    model, clip, _vae = CheckpointLoaderSimple().load_checkpoint("sd15.safetensors")
    (positive,) = CLIPTextEncode().encode(clip, POSITIVE)
    (negative,) = CLIPTextEncode().encode(clip, NEGATIVE)
    latent = {"samples": torch.zeros(LATENT)}
    runs = [KSampler().sample(model, seed, 3, CFG, "euler", "normal", positive, negative, latent)[0]["samples"]
            for seed in (1, 1, 2)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.allclose(runs[0], runs[2])
