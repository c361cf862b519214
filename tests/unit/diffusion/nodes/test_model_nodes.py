"""ModelSamplingDiscrete, ModelSamplingContinuousEDM and DifferentialDiffusion on the tiny SD1.5 and Playground 2.5
checkpoints: one sampling step against the diffusers UNet called directly with the ModelSampling formulas, the
zero-terminal-SNR table against diffusers' rescale, Differential Diffusion against the thresholded mask."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch
from diffusers.schedulers.scheduling_ddim import rescale_zero_terminal_snr

from comfy_nodes.diffusion import custom_sampling as cs
from comfy_nodes.diffusion import model_nodes as mn
from comfy_nodes.diffusion.loaders import CheckpointLoaderSimple
from comfy_nodes.diffusion.text_nodes import CLIPTextEncode
from tests import diffusion_fixtures
from visionatrix.diffusion import latent_formats
from visionatrix.diffusion.sampling.model_sampling import (
    DiscreteSchedule,
    EDMSchedule,
    ModelSampling,
    Prediction,
    discrete,
)
from visionatrix.diffusion.sampling.noise import prepare_noise
from visionatrix.errors import InvalidInput
from visionatrix.models.folders import ModelFolders
from visionatrix.nodes.context import NodeContext, use
from visionatrix.nodes.model_manager import ModelManager

SHAPE = (1, 4, 8, 8)
SEED = 5
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def mn_context(tmp_path_factory) -> NodeContext:
    root = tmp_path_factory.mktemp("model_node_models")
    for kind in ("sd15", "playground25"):
        diffusion_fixtures.write_checkpoint(diffusion_fixtures.cached_checkpoint(kind), root / "checkpoints")
    return NodeContext(model_folders=ModelFolders(root),
                       models=ModelManager(device="cpu", ram_budget_bytes=1 << 30, vram_reserve_bytes=0))


@pytest.fixture(scope="module")
def loaded(mn_context) -> SimpleNamespace:
    with use(mn_context):
        sd15, clip, _ = CheckpointLoaderSimple().load_checkpoint("sd15.safetensors")
        playground, pg_clip, _ = CheckpointLoaderSimple().load_checkpoint("playground25.safetensors")
        return SimpleNamespace(sd15=sd15, positive=CLIPTextEncode().encode(clip, "a lighthouse")[0],
                               playground=playground, pg_positive=CLIPTextEncode().encode(pg_clip, "a lighthouse")[0])


@pytest.fixture(autouse=True)
def current(mn_context):
    with use(mn_context):
        yield mn_context


def one_step(model, positive, sigma: float, image: dict | None = None) -> torch.Tensor:
    """One Euler step from ``sigma`` to 0 under BasicGuider: the model's denoised estimate, raw VAE space."""
    (guider,) = cs.BasicGuider().get_guider(model, positive)
    (sampler,) = cs.KSamplerSelect().get_sampler("euler")
    (noise,) = cs.RandomNoiseNode().get_noise(SEED)
    image = {"samples": torch.zeros(SHAPE)} if image is None else image
    return cs.SamplerCustomAdvanced().sample(noise, guider, sampler, torch.tensor([sigma, 0.0]), image)[0]["samples"]


def reference_step(ms: ModelSampling, positive, sigma: float, max_denoise: bool) -> torch.Tensor:
    """The same step with the fixture's diffusers UNet called directly and ``ms``'s formulas."""
    unet = diffusion_fixtures.cached_checkpoint("sd15").unet
    s = torch.tensor(sigma)
    noise = prepare_noise(SHAPE, SEED)
    x = noise * (math.sqrt(1 + sigma**2) if max_denoise else sigma)
    with torch.no_grad():
        out = unet(ms.scale_input(x, s), ms.timestep(s), encoder_hidden_states=positive[0][0]).sample
    return ms.denoised(x, s, out) / 0.18215


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_model_sampling_discrete_v_prediction_reads_the_output_as_v(loaded):
    (patched,) = mn.ModelSamplingDiscrete().patch(loaded.sd15, "v_prediction", False)
    assert patched.model_sampling.prediction is Prediction.V and patched.unet is loaded.sd15.unet
    assert loaded.sd15.model_sampling.prediction is Prediction.EPS  # the input model is not changed
    sigma = float(patched.model_sampling.sigma_max)
    got = one_step(patched, loaded.positive, sigma)
    close(got, reference_step(ModelSampling(DiscreteSchedule(), Prediction.V), loaded.positive, sigma, True))
    assert not torch.allclose(got, one_step(loaded.sd15, loaded.positive, sigma), atol=1e-3)


def test_model_sampling_discrete_lcm_and_eps(loaded):
    (lcm,) = mn.ModelSamplingDiscrete().patch(loaded.sd15, "lcm", False)
    assert lcm.model_sampling.prediction is Prediction.LCM and len(lcm.model_sampling.sigmas) == 50
    assert torch.equal(lcm.model_sampling.sigmas, discrete("lcm").sigmas)
    close(one_step(lcm, loaded.positive, 3.0),
          reference_step(ModelSampling(DiscreteSchedule(original_steps=50), Prediction.LCM), loaded.positive, 3.0,
                         False))
    (eps,) = mn.ModelSamplingDiscrete().patch(loaded.sd15, "eps", False)
    assert torch.equal(eps.model_sampling.sigmas, loaded.sd15.model_sampling.sigmas)
    for unsupported in ("x0", "img_to_img"):
        with pytest.raises(InvalidInput, match="not supported"):
            mn.ModelSamplingDiscrete().patch(loaded.sd15, unsupported, False)


def test_zsnr_rescales_the_table_to_zero_terminal_snr(loaded):
    (patched,) = mn.ModelSamplingDiscrete().patch(loaded.sd15, "v_prediction", True)
    sigmas = patched.model_sampling.sigmas
    betas = torch.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - rescale_zero_terminal_snr(betas), dim=0)
    expected = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5  # the last is infinite: zero SNR
    torch.testing.assert_close(sigmas[:-1].double(), expected[:-1], rtol=2e-4, atol=0)
    assert math.isclose(float(sigmas[-1]), math.sqrt((1 - 4.8973451890853435e-08) / 4.8973451890853435e-08),
                        rel_tol=1e-5)
    assert math.isclose(float(sigmas[0]), float(loaded.sd15.model_sampling.sigmas[0]), rel_tol=1e-4)  # float32
    assert float(loaded.sd15.model_sampling.sigma_max) < 15  # the loaded model's table is untouched
    (steps,) = cs.BasicScheduler().get_sigmas(patched, "normal", 2, 1.0)
    assert math.isclose(float(steps[0]), float(sigmas[-1]), rel_tol=1e-5)
    assert torch.isfinite(one_step(patched, loaded.positive, float(steps[1]))).all()


def test_continuous_edm_v_prediction_and_eps_on_an_sd_model(loaded):
    for sampling, prediction in (("v_prediction", Prediction.V), ("eps", Prediction.EPS)):
        (patched,) = mn.ModelSamplingContinuousEDM().patch(loaded.sd15, sampling, 120.0, 0.002)
        ms = patched.model_sampling
        assert isinstance(ms.schedule, EDMSchedule) and ms.prediction is prediction and ms.schedule.sigma_data == 1.0
        assert math.isclose(float(ms.sigma_max), 120.0, rel_tol=1e-5) and patched.latent_format is latent_formats.SD1
        assert math.isclose(float(ms.timestep(torch.tensor(2.0))), math.log(2.0) / 4, rel_tol=1e-6)
        reference = ModelSampling(EDMSchedule(0.002, 120.0, 1.0), prediction)
        close(one_step(patched, loaded.positive, 2.0), reference_step(reference, loaded.positive, 2.0, False))


def test_continuous_edm_playground_keeps_the_models_latent_statistics(loaded):
    model = loaded.playground
    assert model.latent_format.name == "playground_edm"
    (patched,) = mn.ModelSamplingContinuousEDM().patch(model, "edm_playground_v2.5", 80.0, 0.01)
    ms = patched.model_sampling
    assert ms.prediction is Prediction.EDM and ms.schedule.sigma_data == 0.5
    assert math.isclose(float(ms.sigma_max), 80.0, rel_tol=1e-5) and math.isclose(float(ms.sigma_min), 0.01,
                                                                                  rel_tol=1e-5)
    assert patched.latent_format is model.latent_format
    x, out, s = torch.randn(SHAPE), torch.randn(SHAPE), torch.tensor(3.0)
    expected = x * 0.25 / (9 + 0.25) + out * 3 * 0.5 / (9 + 0.25) ** 0.5  # Karras et al.'s EDM preconditioning
    torch.testing.assert_close(ms.denoised(x, s, out), expected)
    (karras,) = cs.BasicScheduler().get_sigmas(patched, "karras", 1, 1.0)
    assert torch.allclose(karras, torch.tensor([80.0, 0.0]))
    (default,) = mn.ModelSamplingContinuousEDM().patch(model, "edm_playground_v2.5", 120.0, 0.002)
    sample = one_step(patched, loaded.pg_positive, 80.0)
    assert torch.isfinite(sample).all()
    assert not torch.allclose(sample, one_step(default, loaded.pg_positive, 120.0))


def test_continuous_edm_playground_without_statistics_gets_the_published_ones(loaded):
    plain_sdxl = dataclasses.replace(loaded.playground, latent_format=latent_formats.SDXL)
    (patched,) = mn.ModelSamplingContinuousEDM().patch(plain_sdxl, "edm_playground_v2.5", 120.0, 0.002)
    assert patched.latent_format.name == "playground_edm" and patched.latent_format.scale_factor == 0.5
    assert patched.latent_format.mean == diffusion_fixtures.PLAYGROUND_EDM_MEAN
    assert patched.latent_format.std == diffusion_fixtures.PLAYGROUND_EDM_STD
    (edm,) = mn.ModelSamplingContinuousEDM().patch(plain_sdxl, "edm", 120.0, 0.002)
    assert edm.latent_format is latent_formats.SDXL and edm.model_sampling.prediction is Prediction.EDM
    with pytest.raises(InvalidInput, match="SDXL"):
        mn.ModelSamplingContinuousEDM().patch(loaded.sd15, "edm_playground_v2.5", 120.0, 0.002)
    with pytest.raises(InvalidInput, match="not supported"):
        mn.ModelSamplingContinuousEDM().patch(plain_sdxl, "cosmos_rflow", 120.0, 0.002)
    with pytest.raises(InvalidInput, match=r"^sigma_min"):
        mn.ModelSamplingContinuousEDM().patch(plain_sdxl, "edm", 120.0, 0.0)
    with pytest.raises(InvalidInput, match=r"^sigma_max"):
        mn.ModelSamplingContinuousEDM().patch(plain_sdxl, "edm", 0.001, 0.002)


def test_differential_diffusion_thresholds_the_mask_by_step(loaded):
    (dd,) = mn.DifferentialDiffusion().apply(loaded.sd15)
    assert dd.options["differential_diffusion"] == 1.0 and "differential_diffusion" not in loaded.sd15.options
    assert mn.DifferentialDiffusion().apply(loaded.sd15, 0.0)[0].options["differential_diffusion"] == 1.0
    with pytest.raises(InvalidInput, match=r"^strength"):
        mn.DifferentialDiffusion().apply(loaded.sd15, 1.5)
    samples = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    soft = torch.ones(1, 1, 8, 8)
    soft[..., 4:] = 0.5
    binary = (soft >= 1.0).float()  # at the first step the threshold is 1: only fully masked cells are denoised

    def step(model, mask):
        return one_step(model, loaded.positive, 2.0, {"samples": samples, "noise_mask": mask})

    with_dd = step(dd, soft)
    assert torch.equal(with_dd, step(loaded.sd15, binary))
    assert not torch.allclose(with_dd, step(loaded.sd15, soft))
    torch.testing.assert_close(with_dd[..., 4:], samples[..., 4:])  # cells under 0.5 keep the input latent
    (half,) = mn.DifferentialDiffusion().apply(loaded.sd15, 0.5)
    assert torch.equal(step(half, soft), step(loaded.sd15, soft * 0.5 + binary * 0.5))


def test_nodes_are_registered_with_comfyui_interfaces():
    from comfy_nodes.diffusion import NODE_CLASS_MAPPINGS

    for name in ("ModelSamplingDiscrete", "ModelSamplingContinuousEDM", "DifferentialDiffusion"):
        assert NODE_CLASS_MAPPINGS[name] is mn.NODE_CLASS_MAPPINGS[name]
    discrete_inputs = mn.ModelSamplingDiscrete.INPUT_TYPES()["required"]
    assert discrete_inputs["sampling"][0] == ["eps", "v_prediction", "lcm", "x0", "img_to_img"]
    assert discrete_inputs["zsnr"] == ("BOOLEAN", {"default": False})
    edm_inputs = mn.ModelSamplingContinuousEDM.INPUT_TYPES()["required"]
    assert edm_inputs["sampling"][0] == ["v_prediction", "edm", "edm_playground_v2.5", "eps", "cosmos_rflow"]
    assert edm_inputs["sigma_max"][1]["default"] == 120.0 and edm_inputs["sigma_min"][1]["default"] == 0.002
    assert mn.DifferentialDiffusion.INPUT_TYPES()["optional"]["strength"][1]["default"] == 1.0
