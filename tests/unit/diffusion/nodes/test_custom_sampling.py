"""The custom-sampling nodes on the tiny SD1.5 checkpoint: SamplerCustom(+Advanced) against KSampler, guiders against
their formulas over BasicGuider outputs, schedulers against their closed forms and NVIDIA's published AYS table."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from comfy_nodes.diffusion import custom_sampling as cs
from comfy_nodes.diffusion.loaders import CheckpointLoaderSimple
from comfy_nodes.diffusion.sampling_nodes import KSampler
from comfy_nodes.diffusion.text_nodes import CLIPTextEncode
from tests import diffusion_fixtures
from visionatrix.diffusion.sampling import align_your_steps, schedules
from visionatrix.diffusion.sampling.noise import prepare_noise
from visionatrix.errors import InvalidInput
from visionatrix.models.folders import ModelFolders
from visionatrix.nodes.context import NodeContext, use
from visionatrix.nodes.model_manager import ModelManager

SHAPE = (1, 4, 8, 8)
SEED = 7
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def cs_context(tmp_path_factory) -> NodeContext:
    root = tmp_path_factory.mktemp("custom_sampling_models")
    diffusion_fixtures.write_checkpoint(diffusion_fixtures.cached_checkpoint("sd15"), root / "checkpoints")
    return NodeContext(model_folders=ModelFolders(root),
                       models=ModelManager(device="cpu", ram_budget_bytes=1 << 30, vram_reserve_bytes=0))


@pytest.fixture(scope="module")
def sd15(cs_context) -> SimpleNamespace:
    with use(cs_context):
        model, clip, _vae = CheckpointLoaderSimple().load_checkpoint("sd15.safetensors")
        texts = {"positive": "a red cat", "negative": "blurry", "other": "a blue dog"}
        conds = {name: CLIPTextEncode().encode(clip, text)[0] for name, text in texts.items()}
    return SimpleNamespace(model=model, **conds)


@pytest.fixture(autouse=True)
def current(cs_context):
    with use(cs_context):
        yield cs_context


def latent(seed: int | None = None) -> dict:
    if seed is None:
        return {"samples": torch.zeros(SHAPE)}
    return {"samples": torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))}


@pytest.mark.parametrize(("sampler", "scheduler", "denoise", "start"),
                         [("euler", "normal", 1.0, None), ("euler_ancestral", "karras", 1.0, None),
                          ("dpmpp_2m_sde", "simple", 0.6, 3)])
def test_sampler_custom_with_select_and_basic_scheduler_is_ksampler(sd15, sampler, scheduler, denoise, start):
    image = latent(start)
    (expected,) = KSampler().sample(sd15.model, SEED, 2, 5.0, sampler, scheduler, sd15.positive, sd15.negative, image,
                                    denoise)
    (picked,) = cs.KSamplerSelect().get_sampler(sampler)
    (sigmas,) = cs.BasicScheduler().get_sigmas(sd15.model, scheduler, 2, denoise)
    out, denoised = cs.SamplerCustom().sample(sd15.model, True, SEED, 5.0, sd15.positive, sd15.negative, picked, sigmas,
                                              image)
    assert torch.equal(out["samples"], expected["samples"])
    assert denoised["samples"].shape == out["samples"].shape


def test_sampler_custom_advanced_with_random_noise_and_cfg_guider_is_sampler_custom(sd15):
    (sampler,) = cs.KSamplerSelect().get_sampler("dpmpp_2m_sde")  # Brownian noise: the seed must reach the sampler
    (sigmas,) = cs.BasicScheduler().get_sigmas(sd15.model, "karras", 2, 1.0)
    image = latent()
    expected = cs.SamplerCustom().sample(sd15.model, True, SEED, 4.0, sd15.positive, sd15.negative, sampler, sigmas,
                                         image)
    (noise,) = cs.RandomNoiseNode().get_noise(SEED)
    (guider,) = cs.CFGGuider().get_guider(sd15.model, sd15.positive, sd15.negative, 4.0)
    got = cs.SamplerCustomAdvanced().sample(noise, guider, sampler, sigmas, image)
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a["samples"], b["samples"])
    (other,) = cs.RandomNoiseNode().get_noise(SEED + 1)
    assert not torch.equal(cs.SamplerCustomAdvanced().sample(other, guider, sampler, sigmas, image)[0]["samples"],
                           got[0]["samples"])


def test_disable_noise_is_add_noise_off_and_starts_from_the_latent(sd15):
    (sampler,) = cs.KSamplerSelect().get_sampler("euler")
    sigmas = torch.tensor([1.5, 0.7, 0.0])
    image = latent(3)
    (noise,) = cs.DisableNoise().get_noise()
    assert noise.seed == 0 and torch.equal(noise.generate_noise(image), torch.zeros(SHAPE))
    (guider,) = cs.CFGGuider().get_guider(sd15.model, sd15.positive, sd15.negative, 3.0)
    got, _ = cs.SamplerCustomAdvanced().sample(noise, guider, sampler, sigmas, image)
    expected, _ = cs.SamplerCustom().sample(sd15.model, False, 123, 3.0, sd15.positive, sd15.negative, sampler, sigmas,
                                            image)
    assert torch.equal(got["samples"], expected["samples"])
    noisy, _ = cs.SamplerCustom().sample(sd15.model, True, 123, 3.0, sd15.positive, sd15.negative, sampler, sigmas,
                                         image)
    assert not torch.allclose(noisy["samples"], got["samples"])


def test_random_noise_is_comfyui_noise_with_batch_index():
    (noise,) = cs.RandomNoiseNode().get_noise(11)
    batch = {"samples": torch.zeros(2, 4, 8, 8), "batch_index": [3, 1]}
    assert torch.equal(noise.generate_noise(batch), prepare_noise((2, 4, 8, 8), 11, [3, 1]))
    assert torch.equal(noise.generate(latent()), torch.randn(SHAPE, generator=torch.Generator().manual_seed(11)))


def test_outputs_keep_the_latent_keys_and_the_last_denoised_estimate(sd15):
    (sampler,) = cs.KSamplerSelect().get_sampler("euler")
    image = {**latent(), "batch_index": [0]}
    (sigmas,) = cs.BasicScheduler().get_sigmas(sd15.model, "normal", 3, 1.0)
    high, low = cs.SplitSigmas().get_sigmas(sigmas, 1)
    args = (sd15.model, True, SEED, 2.0, sd15.positive, sd15.negative, sampler)
    out, denoised = cs.SamplerCustom().sample(*args, sigmas, image)
    assert out["batch_index"] == denoised["batch_index"] == [0]
    # Euler's last step to sigma 0 lands on the denoised estimate
    torch.testing.assert_close(out["samples"], denoised["samples"], rtol=1e-5, atol=1e-5)
    half, half_denoised = cs.SamplerCustom().sample(*args, high, image)
    assert not torch.allclose(half["samples"], half_denoised["samples"])  # noise is left in the output
    (disabled,) = cs.DisableNoise().get_noise()
    (guider,) = cs.CFGGuider().get_guider(sd15.model, sd15.positive, sd15.negative, 2.0)
    rest, _ = cs.SamplerCustomAdvanced().sample(disabled, guider, sampler, low, half)
    torch.testing.assert_close(rest["samples"], out["samples"], rtol=1e-5, atol=1e-5)
    empty, empty_denoised = cs.SamplerCustom().sample(*args, torch.zeros(0), image)
    assert torch.equal(empty["samples"], image["samples"]) and torch.equal(empty_denoised["samples"], image["samples"])


def one_step(guider) -> torch.Tensor:
    """The guider's combined estimate (raw VAE space) at sigma 2 from seeded noise: one Euler step to 0."""
    (sampler,) = cs.KSamplerSelect().get_sampler("euler")
    (noise,) = cs.RandomNoiseNode().get_noise(SEED)
    return cs.SamplerCustomAdvanced().sample(noise, guider, sampler, torch.tensor([2.0, 0.0]), latent())[0]["samples"]


def test_guiders_combine_the_basic_guider_estimates(sd15):
    basic = {name: one_step(cs.BasicGuider().get_guider(sd15.model, getattr(sd15, name))[0])
             for name in ("positive", "negative", "other")}
    c1, c2, neg = basic["positive"], basic["other"], basic["negative"]

    def close(actual, expected):
        torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))

    close(one_step(cs.CFGGuider().get_guider(sd15.model, sd15.positive, sd15.negative, 3.5)[0]), neg + (c1 - neg) * 3.5)
    close(one_step(cs.CFGGuider().get_guider(sd15.model, sd15.positive, sd15.negative, 1.0)[0]), c1)
    dual = cs.DualCFGGuider().get_guider
    close(one_step(dual(sd15.model, sd15.positive, sd15.other, sd15.negative, 2.5, 4.0)[0]),
          neg + (c2 - neg) * 4.0 + (c1 - c2) * 2.5)
    close(one_step(dual(sd15.model, sd15.positive, sd15.other, sd15.negative, 2.5, 4.0, "nested")[0]),
          neg + (c2 + (c1 - c2) * 2.5 - neg) * 4.0)
    close(one_step(dual(sd15.model, sd15.positive, sd15.other, sd15.negative, 1.0, 1.0)[0]), c1)


def test_basic_scheduler_is_the_ksampler_schedule(sd15):
    ms = sd15.model.model_sampling
    for scheduler, steps, denoise in (("karras", 8, 1.0), ("normal", 10, 0.5), ("beta", 5, 0.75)):
        (sigmas,) = cs.BasicScheduler().get_sigmas(sd15.model, scheduler, steps, denoise)
        assert sigmas.dtype == torch.float32 and sigmas.device.type == "cpu" and len(sigmas) == steps + 1
        assert torch.equal(sigmas, schedules.for_denoise(scheduler, ms, steps, denoise))
    (full,) = cs.BasicScheduler().get_sigmas(sd15.model, "normal", 20, 1.0)
    (half,) = cs.BasicScheduler().get_sigmas(sd15.model, "normal", 10, 0.5)
    assert torch.equal(half, full[-11:])
    assert len(cs.BasicScheduler().get_sigmas(sd15.model, "normal", 10, 0.0)[0]) == 0


def test_karras_and_exponential_follow_their_formulas(sd15):
    (karras,) = cs.KarrasScheduler().get_sigmas(6, 10.0, 0.1, 5.0)
    expected = [(10.0 ** 0.2 + i / 5 * (0.1 ** 0.2 - 10.0 ** 0.2)) ** 5.0 for i in range(6)] + [0.0]
    torch.testing.assert_close(karras, torch.tensor(expected), rtol=1e-6, atol=0)
    (exponential,) = cs.ExponentialScheduler().get_sigmas(5, 10.0, 0.1)
    expected = [math.exp(math.log(10.0) + i / 4 * (math.log(0.1) - math.log(10.0))) for i in range(5)] + [0.0]
    torch.testing.assert_close(exponential, torch.tensor(expected), rtol=1e-6, atol=0)
    # the defaults are SD's extremes: the model's karras / exponential schedules
    for node, name in ((cs.KarrasScheduler, "karras"), (cs.ExponentialScheduler, "exponential")):
        defaults = {key: spec[1]["default"] for key, spec in node.INPUT_TYPES()["required"].items() if key != "steps"}
        torch.testing.assert_close(node().get_sigmas(9, **defaults)[0],
                                   schedules.sigmas(name, sd15.model.model_sampling, 9), rtol=2e-5, atol=0)
    (single,) = cs.KarrasScheduler().get_sigmas(1, 14.614642, 0.0291675, 7.0)
    torch.testing.assert_close(single, torch.tensor([14.614642, 0.0]))
    with pytest.raises(InvalidInput, match="sigma_min"):
        cs.ExponentialScheduler().get_sigmas(5, 10.0, 0.0)
    with pytest.raises(InvalidInput, match="rho"):
        cs.KarrasScheduler().get_sigmas(5, 10.0, 0.1, 0.0)


PUBLISHED_AYS = {"SD1": [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029],
                 "SDXL": [14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029],
                 "SVD": [700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002]}
"""NVIDIA's Align Your Steps 10-step noise levels as published (three decimals)."""
PUBLISHED_AYS_TIMESTEPS = {"SD1": [999, 850, 736, 645, 545, 455, 343, 233, 124, 24, 0],
                           "SDXL": [999, 845, 730, 587, 443, 310, 193, 116, 53, 13, 0]}


@pytest.mark.parametrize("model_type", ["SD1", "SDXL", "SVD"])
def test_align_your_steps_ten_steps_are_the_published_levels(sd15, model_type):
    (sigmas,) = cs.AlignYourStepsScheduler().get_sigmas(model_type, 10, 1.0)
    published = torch.tensor([*PUBLISHED_AYS[model_type][:-1], 0.0])
    # SD1/SDXL: the SD table at the published timesteps (as ComfyUI), within 0.0035 of the rounded published sigmas
    tolerance = {"rtol": 0, "atol": 3.5e-3} if model_type in PUBLISHED_AYS_TIMESTEPS else {"rtol": 1e-6, "atol": 0}
    torch.testing.assert_close(sigmas, published, **tolerance)
    assert torch.equal(sigmas[:-1], torch.tensor(align_your_steps.NOISE_LEVELS[model_type][:-1]))
    if model_type in PUBLISHED_AYS_TIMESTEPS:
        at_timesteps = sd15.model.model_sampling.sigma(torch.tensor(PUBLISHED_AYS_TIMESTEPS[model_type][:-1],
                                                                    dtype=torch.float32))
        torch.testing.assert_close(sigmas[:-1], at_timesteps, rtol=1e-6, atol=0)


@pytest.mark.parametrize("steps", [1, 4, 7, 20, 35])
def test_align_your_steps_interpolates_log_linearly(steps):
    (sigmas,) = cs.AlignYourStepsScheduler().get_sigmas("SDXL", steps, 1.0)
    levels = align_your_steps.NOISE_LEVELS["SDXL"]
    assert len(sigmas) == steps + 1 and sigmas[-1] == 0 and bool((sigmas[1:] < sigmas[:-1]).all())
    assert math.isclose(float(sigmas[0]), levels[0], rel_tol=1e-6)
    for i, value in enumerate(sigmas[:-1].tolist()):  # each point on the log-linear segment it falls in
        position = i / steps * 10
        low = min(int(position), 9)
        frac = position - low
        expected = math.exp((1 - frac) * math.log(levels[low]) + frac * math.log(levels[low + 1]))
        assert math.isclose(value, expected, rel_tol=1e-6), (i, value, expected)
    if steps == 20:  # every other point is a published level
        torch.testing.assert_close(sigmas[:-1:2], torch.tensor(levels[:-1]), rtol=1e-6, atol=0)


def test_align_your_steps_denoise_keeps_the_last_levels():
    (full,) = cs.AlignYourStepsScheduler().get_sigmas("SD1", 10, 1.0)
    (half,) = cs.AlignYourStepsScheduler().get_sigmas("SD1", 10, 0.5)
    assert torch.equal(half, full[-6:])
    (quarter,) = cs.AlignYourStepsScheduler().get_sigmas("SD1", 10, 0.25)  # round(2.5) == 2, as Python rounds
    assert torch.equal(quarter, full[-3:])
    (shifted,) = cs.AlignYourStepsScheduler().get_sigmas("SD1", 20, 0.6)
    assert torch.equal(shifted[:-1], cs.AlignYourStepsScheduler().get_sigmas("SD1", 20, 1.0)[0][-13:-1])
    assert shifted[-1] == 0 and len(shifted) == 13
    assert len(cs.AlignYourStepsScheduler().get_sigmas("SD1", 10, 0.0)[0]) == 0


def test_sd_turbo_scheduler_takes_timesteps_from_the_top(sd15):
    ms = sd15.model.model_sampling
    (one,) = cs.SDTurboScheduler().get_sigmas(sd15.model, 1, 1.0)
    torch.testing.assert_close(one, torch.stack([ms.sigma_max, torch.tensor(0.0)]))
    (four,) = cs.SDTurboScheduler().get_sigmas(sd15.model, 4, 1.0)
    expected = torch.cat([ms.sigma(torch.tensor([999.0, 899.0, 799.0, 699.0])), torch.zeros(1)])
    torch.testing.assert_close(four, expected)
    (late,) = cs.SDTurboScheduler().get_sigmas(sd15.model, 2, 0.5)
    torch.testing.assert_close(late, torch.cat([ms.sigma(torch.tensor([499.0, 399.0])), torch.zeros(1)]))
    assert bool((four[1:] < four[:-1]).all())
    assert torch.equal(cs.SDTurboScheduler().get_sigmas(sd15.model, 3, 0.0)[0], torch.zeros(1))
    with pytest.raises(InvalidInput, match="steps"):
        cs.SDTurboScheduler().get_sigmas(sd15.model, 11, 1.0)


def test_split_and_flip_sigmas():
    sigmas = torch.tensor([8.0, 4.0, 2.0, 1.0, 0.0])
    high, low = cs.SplitSigmas().get_sigmas(sigmas, 2)
    assert high.tolist() == [8.0, 4.0, 2.0] and low.tolist() == [2.0, 1.0, 0.0]
    high, low = cs.SplitSigmas().get_sigmas(sigmas, 0)
    assert high.tolist() == [8.0] and torch.equal(low, sigmas)
    (flipped,) = cs.FlipSigmas().get_sigmas(sigmas)
    assert flipped.tolist() == pytest.approx([1e-4, 1.0, 2.0, 4.0, 8.0])
    assert sigmas.tolist() == [8.0, 4.0, 2.0, 1.0, 0.0]  # the input is not changed
    assert len(cs.FlipSigmas().get_sigmas(torch.zeros(0))[0]) == 0


def test_bad_inputs_name_the_input(sd15):
    (sampler,) = cs.KSamplerSelect().get_sampler("euler")
    sigmas = torch.tensor([1.0, 0.0])
    args = (sd15.model, True, 0, 2.0, sd15.positive, sd15.negative)
    with pytest.raises(InvalidInput, match=r"^sampler"):
        cs.SamplerCustom().sample(*args, "euler", sigmas, latent())
    with pytest.raises(InvalidInput, match=r"^sigmas"):
        cs.SamplerCustom().sample(*args, sampler, torch.ones(2, 2), latent())
    with pytest.raises(InvalidInput, match=r"^latent_image"):
        cs.SamplerCustom().sample(*args, sampler, sigmas, {"samples": torch.ones(1, 3, 8, 8)})
    (noise,) = cs.RandomNoiseNode().get_noise(0)
    with pytest.raises(InvalidInput, match=r"^guider"):
        cs.SamplerCustomAdvanced().sample(noise, sd15.model, sampler, sigmas, latent())
    (guider,) = cs.BasicGuider().get_guider(sd15.model, sd15.positive)
    with pytest.raises(InvalidInput, match=r"^noise"):
        cs.SamplerCustomAdvanced().sample(7, guider, sampler, sigmas, latent())
    with pytest.raises(InvalidInput, match=r"^conditioning"):
        cs.BasicGuider().get_guider(sd15.model, [])
    with pytest.raises(InvalidInput, match=r"^model"):
        cs.CFGGuider().get_guider("model", sd15.positive, sd15.negative, 1.0)
    with pytest.raises(InvalidInput, match=r"^sampler_name"):
        cs.KSamplerSelect().get_sampler("dpm_fast_unknown")


def test_nodes_are_registered_with_comfyui_interfaces():
    from comfy_nodes.diffusion import NODE_CLASS_MAPPINGS

    names = ["SamplerCustom", "SamplerCustomAdvanced", "KSamplerSelect", "BasicScheduler", "KarrasScheduler",
             "ExponentialScheduler", "AlignYourStepsScheduler", "SDTurboScheduler", "RandomNoise", "DisableNoise",
             "CFGGuider", "BasicGuider", "DualCFGGuider", "SplitSigmas", "FlipSigmas"]
    assert all(NODE_CLASS_MAPPINGS.get(name) is cs.NODE_CLASS_MAPPINGS[name] for name in names)
    custom = cs.SamplerCustom.INPUT_TYPES()["required"]
    assert list(custom) == ["model", "add_noise", "noise_seed", "cfg", "positive", "negative", "sampler", "sigmas",
                            "latent_image"]
    assert custom["add_noise"][1]["default"] is True and custom["cfg"][1]["default"] == 8.0
    assert cs.SamplerCustom.RETURN_NAMES == ("output", "denoised_output")
    ays = cs.AlignYourStepsScheduler.INPUT_TYPES()["required"]
    assert ays["model_type"][0] == ["SD1", "SDXL", "SVD"] and ays["steps"][1]["default"] == 10
    assert cs.SDTurboScheduler.INPUT_TYPES()["required"]["steps"][1] == {"default": 1, "min": 1, "max": 10}
    assert cs.KarrasScheduler.INPUT_TYPES()["required"]["sigma_max"][1]["default"] == 14.614642
    dual = cs.DualCFGGuider.INPUT_TYPES()
    assert list(dual["required"]) == ["model", "cond1", "cond2", "negative", "cfg_conds", "cfg_cond2_negative"]
    assert dual["optional"]["style"][0] == ["regular", "nested"]
    assert cs.SplitSigmas.RETURN_NAMES == ("high_sigmas", "low_sigmas")


class TinyLatent:
    """A zero LATENT for the graph test (the latent nodes are another module's)."""

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "make"
    CATEGORY = "test"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def make(self):
        return (latent(),)


class CaptureLatent:
    OUTPUT_NODE = True
    RETURN_TYPES = ()
    FUNCTION = "capture"
    CATEGORY = "test"
    seen: list = []

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",)}}

    def capture(self, samples):
        CaptureLatent.seen.append(samples["samples"])
        return {}


async def test_a_graph_like_the_corpus_flows_runs_through_the_executor(sd15, cs_context, tmp_path):
    from comfy_nodes import diffusion
    from visionatrix.executor.run import Executor, ExecutorSettings
    from visionatrix.nodes.registry import NodeRegistry

    registry = NodeRegistry()
    registry.register_mappings(diffusion.NODE_CLASS_MAPPINGS, diffusion.NODE_DISPLAY_NAME_MAPPINGS,
                               python_module="comfy_nodes.diffusion", pack="diffusion", core=True)
    registry.register_mappings({"TinyLatent": TinyLatent, "CaptureLatent": CaptureLatent}, None,
                               python_module="tests", pack="tests")
    text = {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1]}}
    graph = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
        "2": {**text, "inputs": {**text["inputs"], "text": "a red cat"}},
        "3": {**text, "inputs": {**text["inputs"], "text": "blurry"}},
        "4": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "dpmpp_2m_sde"}},
        "5": {"class_type": "AlignYourStepsScheduler", "inputs": {"model_type": "SD1", "steps": 2, "denoise": 1}},
        "6": {"class_type": "TinyLatent", "inputs": {}},
        "7": {"class_type": "SamplerCustom", "inputs": {
            "add_noise": True, "noise_seed": SEED, "cfg": 4.5, "model": ["1", 0], "positive": ["2", 0],
            "negative": ["3", 0], "sampler": ["4", 0], "sigmas": ["5", 0], "latent_image": ["6", 0]}},
        "8": {"class_type": "CaptureLatent", "inputs": {"samples": ["7", 0]}},
        "9": {"class_type": "DualCFGGuider", "inputs": {"model": ["1", 0], "cond1": ["2", 0], "cond2": ["2", 0],
                                                         "negative": ["3", 0], "cfg_conds": 1.0,
                                                         "cfg_cond2_negative": 4.5}},
        "10": {"class_type": "RandomNoise", "inputs": {"noise_seed": SEED}},
        "11": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["10", 0], "guider": ["9", 0],
                                                                 "sampler": ["4", 0], "sigmas": ["5", 0],
                                                                 "latent_image": ["6", 0]}},
        "12": {"class_type": "CaptureLatent", "inputs": {"samples": ["11", 0]}},
    }
    executor = Executor(registry, ExecutorSettings(device="cpu", input_dir=tmp_path / "in", output_dir=tmp_path / "out",
                                                   temp_dir=tmp_path / "tmp", model_folders=cs_context.model_folders))
    CaptureLatent.seen.clear()
    try:
        await executor.execute(graph)
    finally:
        executor.close()
    (sampler,) = cs.KSamplerSelect().get_sampler("dpmpp_2m_sde")
    (sigmas,) = cs.AlignYourStepsScheduler().get_sigmas("SD1", 2, 1.0)
    expected, _ = cs.SamplerCustom().sample(sd15.model, True, SEED, 4.5, sd15.positive, sd15.negative, sampler, sigmas,
                                            latent())
    assert len(CaptureLatent.seen) == 2
    for seen in CaptureLatent.seen:  # dual guider with equal conds at cfg_conds 1 is CFG
        torch.testing.assert_close(seen.cpu(), expected["samples"], rtol=1e-4,
                                   atol=1e-4 * float(expected["samples"].abs().max()))
