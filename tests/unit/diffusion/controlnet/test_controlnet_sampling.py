"""KSampler with a ControlNet applied (ControlNetLoader + ControlNetApplyAdvanced) on the tiny SD1.5 checkpoint against
a reference loop written here from the diffusers modules: the ControlNet's residuals passed to the UNet as
``down_block_additional_residuals`` / ``mid_block_additional_residual`` at the steps inside its percent range,
Euler's update (Karras et al. 2022), diffusers' sigma spacing and ComfyUI's noise (manual_seed + one CPU randn)."""

from __future__ import annotations

import math
import os

import pytest
import torch

from comfy_nodes.diffusion import controlnet_nodes as nodes
from tests import controlnet_fixtures as fx
from tests import diffusion_fixtures
from visionatrix.models.folders import ModelFolders
from visionatrix.nodes.context import NodeContext, use
from visionatrix.nodes.model_manager import ModelManager

STEPS, CFG, SEED, STRENGTH = 4, 5.0, 42, 0.8
LATENT = (1, 4, 16, 16)
SD1_VAE_SCALE = 0.18215
"""KSampler returns the raw VAE latent: the sampled x divided by the family's scaling factor."""
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    root = tmp_path_factory.mktemp("models")
    diffusion_fixtures.write_checkpoint(diffusion_fixtures.cached_checkpoint("sd15"), root / "checkpoints")
    fx.write_controlnet(fx.cached_controlnet("sd15"), root / "controlnet", "ldm", name="canny.safetensors")
    return root


def _conds():
    generator = torch.Generator().manual_seed(3)
    cond, uncond = torch.randn(1, 77, 64, generator=generator), torch.randn(1, 77, 64, generator=generator)
    return cond, uncond, torch.rand(1, 128, 128, 3, generator=generator)


def _ours(models_dir, end_percent: float) -> torch.Tensor:
    from comfy_nodes.diffusion.loaders import CheckpointLoaderSimple
    from comfy_nodes.diffusion.sampling_nodes import KSampler

    cond, uncond, hint = _conds()
    ctx = NodeContext(model_folders=ModelFolders(models_dir),
                      models=ModelManager(device="cpu", ram_budget_bytes=1 << 30, vram_reserve_bytes=0))
    with use(ctx):
        model = CheckpointLoaderSimple().load_checkpoint("sd15.safetensors")[0]
        net = nodes.ControlNetLoader().load_controlnet("canny.safetensors")[0]
        positive, negative = nodes.ControlNetApplyAdvanced().apply_controlnet(
            [[cond, {}]], [[uncond, {}]], net, hint, STRENGTH, 0.0, end_percent)
        latent = {"samples": torch.zeros(LATENT)}
        return KSampler().sample(model, SEED, STEPS, CFG, "euler", "normal", positive, negative, latent)[0]["samples"]


def _reference(active_steps: set[int]) -> torch.Tensor:
    from diffusers import EulerDiscreteScheduler

    cond, uncond, hint = _conds()
    unet, control = diffusion_fixtures.cached_checkpoint("sd15").unet, fx.cached_controlnet("sd15").module
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="linspace")
    scheduler.set_timesteps(STEPS)
    sigmas, timesteps = scheduler.sigmas.float(), scheduler.timesteps.float()
    context = torch.cat([cond, uncond])

    def denoise(x: torch.Tensor, i: int) -> torch.Tensor:
        sigma = sigmas[i]
        x_in = (x / (sigma**2 + 1) ** 0.5).repeat(2, 1, 1, 1)
        extra = {}
        with torch.no_grad():
            if i in active_steps:
                down, mid = control(x_in, timesteps[i], encoder_hidden_states=context,
                                    controlnet_cond=hint.movedim(-1, 1).expand(2, -1, -1, -1),
                                    conditioning_scale=STRENGTH, return_dict=False)
                extra = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
            eps = unet(x_in, timesteps[i], encoder_hidden_states=context, **extra).sample
        d_cond, d_uncond = (x - eps * sigma).chunk(2)
        return d_uncond + (d_cond - d_uncond) * CFG

    x = torch.randn(LATENT, generator=torch.Generator().manual_seed(SEED)) * math.sqrt(1 + float(sigmas[0]) ** 2)
    for i in range(STEPS):
        x = x + (x - denoise(x, i)) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x


@pytest.mark.parametrize(("end_percent", "active_steps"), [(1.0, {0, 1, 2, 3}), (0.5, {0, 1})])
def test_ksampler_with_a_controlnet_matches_the_reference_loop(models_dir, end_percent, active_steps):
    # 4 "normal" steps sit at timesteps 999, 666, 333, 0: ending at 50 % (timestep 499.5) keeps the first two
    ours = _ours(models_dir, end_percent) * SD1_VAE_SCALE
    reference = _reference(active_steps)
    assert torch.allclose(ours, reference, atol=1e-4 * float(reference.abs().max()), rtol=0)
    without = _reference(set())
    assert (ours - without).abs().max() > 0.05 * float(reference.abs().max())  # the control made a difference
