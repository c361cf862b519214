"""Flux.1 and SD3.5 sampled through the nodes against a direct loop over the same diffusers modules.

The reference encodes the prompt with the transformers modules and the tokenizer directly, draws the noise as
ComfyUI does (``manual_seed`` then one CPU ``randn``), builds the sigmas from the published flow-matching shift
(``sigma = shift·t / (1 + (shift - 1)·t)``), packs Flux latents 2 x 2 with (index, row, column) ids, and steps with
Euler (``x += (sigma_next - sigma)·v``); the nodes must give the same latent within float tolerance.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tests import dit_files, sd3_fixtures
from tests.unit.diffusion.dit.conftest import node_instances
from visionatrix.errors import InvalidInput

PROMPT = "a photo of a cat"
SEED = 123
FLUX_SCALE, FLUX_SHIFT = 0.3611, 0.1159


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dit_models")
    dit_files.write_text_encoders(root)
    dit_files.write_vae(root)
    for variant in ("dev", "schnell", "fill"):
        dit_files.write_flux(root, variant)
    dit_files.write_flux_all_in_one(root)
    dit_files.write_sd3_checkpoint(root, "sd35_large", "sd3.5_large.safetensors")
    sd3_fixtures.write(sd3_fixtures.cached_checkpoint("sd35_medium", all_in_one=True).state_dict,
                       root / "checkpoints" / "sd3.5_medium_incl_clips_t5xxlfp8scaled.safetensors")
    return root


@pytest.fixture
def nodes(models_dir):
    with node_instances(models_dir) as instances:
        yield instances


def _t5_ids(text: str, min_length: int) -> torch.Tensor:
    from visionatrix.diffusion.text.t5_tokenizer import t5_tokenizer

    tokenizer = t5_tokenizer(_tokenizer_file())
    ids = [i for word in text.split() for i in tokenizer(word, add_special_tokens=False)["input_ids"]] + [1]
    return torch.tensor([ids + [0] * (min_length - len(ids))])


def _tokenizer_file():
    return _tokenizer_file.path  # set by the fixture below


@pytest.fixture(autouse=True)
def _tokenizer_path(models_dir):
    _tokenizer_file.path = models_dir / "text_encoders" / "t5_tokenizer" / "tokenizer.json"


def _clip_ids(text: str) -> torch.Tensor:
    from visionatrix.diffusion.text.vocab import clip_tokenizer

    tokens = clip_tokenizer()(text, add_special_tokens=False)["input_ids"] if text else []
    ids = [49406, *tokens, 49407]
    return torch.tensor([ids + [49407] * (77 - len(ids))])


def _flux_reference(variant: str, steps: int, guidance: float | None, shift: float, side: int = 64,
                    concat: torch.Tensor | None = None) -> torch.Tensor:
    from visionatrix.diffusion.dit import calls

    files = dit_files.modules()
    with torch.no_grad():
        context = files.t5(input_ids=_t5_ids(PROMPT, 256)).last_hidden_state
        pooled = files.clip_l(input_ids=_clip_ids(PROMPT)).pooler_output
        torch.manual_seed(SEED)
        x = torch.randn(1, 16, side // 8, side // 8)
        model = files.flux[variant]
        sigmas = [shift * t / (1 + (shift - 1) * t) for t in (1 - i / steps for i in range(steps))] + [0.0]
        ids = calls.image_ids(side // 8, side // 8)
        for sigma, sigma_next in itertools.pairwise(sigmas):
            x_in = x if concat is None else torch.cat([x, concat], dim=1)
            v = model(hidden_states=calls.pack(x_in), encoder_hidden_states=context, pooled_projections=pooled,
                      timestep=torch.tensor([sigma]), img_ids=ids, txt_ids=torch.zeros(context.shape[1], 3),
                      guidance=None if guidance is None else torch.tensor([guidance]), return_dict=False)[0]
            x = x + (sigma_next - sigma) * calls.unpack(v, side // 8, side // 8)
    return x / FLUX_SCALE + FLUX_SHIFT


def _flux_run(nodes, model, *, steps: int, guidance: float, latent=None, scheduler: str = "simple"):
    (clip,) = nodes["DualCLIPLoader"].load_clip("t5xxl_fp16.safetensors", "clip_l.safetensors", "flux")
    (cond,) = nodes["CLIPTextEncode"].encode(clip, PROMPT)
    (cond,) = nodes["FluxGuidance"].append(cond, guidance)
    if latent is None:
        (latent,) = nodes["EmptySD3LatentImage"].generate(64, 64, 1)
    (sigmas,) = nodes["BasicScheduler"].get_sigmas(model, scheduler, steps, 1.0)
    (sampler,) = nodes["KSamplerSelect"].get_sampler("euler")
    (guider,) = nodes["BasicGuider"].get_guider(model, cond)
    (noise,) = nodes["RandomNoise"].get_noise(SEED)
    out, _ = nodes["SamplerCustomAdvanced"].sample(noise, guider, sampler, sigmas, latent)
    return out["samples"], sigmas


def test_flux_dev_matches_a_direct_loop_with_guidance_and_the_default_shift(nodes):
    (model,) = nodes["UNETLoader"].load_unet("flux1-dev.safetensors", "default")
    samples, sigmas = _flux_run(nodes, model, steps=4, guidance=2.5)
    shift = math.exp(1.15)
    assert torch.allclose(sigmas[1], torch.tensor(shift * 0.75 / (1 + (shift - 1) * 0.75)), atol=1e-6)
    reference = _flux_reference("dev", 4, 2.5, shift)
    torch.testing.assert_close(samples, reference, atol=2e-4, rtol=1e-4)
    again, _ = _flux_run(nodes, model, steps=4, guidance=2.5)
    assert torch.equal(samples, again)
    other, _ = _flux_run(nodes, model, steps=4, guidance=6.0)
    assert not torch.allclose(samples, other, atol=1e-3)


def test_model_sampling_flux_shift_depends_on_the_resolution(nodes):
    (model,) = nodes["UNETLoader"].load_unet("flux1-dev.safetensors", "default")
    (shifted,) = nodes["ModelSamplingFlux"].patch(model, 1.15, 0.5, 512, 512)
    mu = 0.5 + (512 * 512 / 256 - 256) * (1.15 - 0.5) / (4096 - 256)  # 1024 tokens: between 256 and 4096
    samples, _ = _flux_run(nodes, shifted, steps=2, guidance=3.5)  # steps dividing Flux's 10,000-entry table
    torch.testing.assert_close(samples, _flux_reference("dev", 2, 3.5, math.exp(mu)), atol=2e-4, rtol=1e-4)
    (big,) = nodes["ModelSamplingFlux"].patch(model, 1.15, 0.5, 1024, 1024)
    assert math.isclose(float(big.model_sampling.sigma(torch.tensor(0.5))), math.exp(1.15) * 0.5 /
                        (1 + (math.exp(1.15) - 1) * 0.5), rel_tol=1e-5)


def test_flux_schnell_from_a_4_channel_empty_latent_and_fp8_storage(nodes):
    (model,) = nodes["UNETLoader"].load_unet("flux1-schnell.safetensors", "default")
    (empty4,) = nodes["EmptyLatentImage"].generate(64, 64, 1)
    samples, sigmas = _flux_run(nodes, model, steps=2, guidance=3.5, latent=empty4)
    assert samples.shape == (1, 16, 8, 8)
    torch.testing.assert_close(sigmas, torch.tensor([1.0, 0.5, 0.0]))
    torch.testing.assert_close(samples, _flux_reference("schnell", 2, None, 1.0), atol=2e-4, rtol=1e-4)
    (stored,) = nodes["UNETLoader"].load_unet("flux1-schnell.safetensors", "fp8_e4m3fn")
    assert stored.unet.transformer_blocks[0].attn.to_q.weight.dtype == torch.float8_e4m3fn
    fp8_samples, _ = _flux_run(nodes, stored, steps=2, guidance=3.5, latent=empty4)
    assert fp8_samples.isfinite().all()
    assert 0 < float((fp8_samples - samples).abs().max()) < 0.5 * float(samples.abs().max())


def test_flux_fill_takes_the_masked_image_latent_and_the_pixel_mask(nodes):
    from comfy_nodes.diffusion.vae_nodes import InpaintModelConditioning

    (model,) = nodes["UNETLoader"].load_unet("flux1-fill.safetensors", "default")
    assert model.in_channels == 96
    (vae,) = nodes["VAELoader"].load_vae("ae.safetensors")
    (clip,) = nodes["DualCLIPLoader"].load_clip("clip_l.safetensors", "t5xxl_fp16.safetensors", "flux")
    (cond,) = nodes["CLIPTextEncode"].encode(clip, PROMPT)
    pixels = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(5))
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 8:40] = 1.0
    positive, _, latent = InpaintModelConditioning().encode(cond, cond, pixels, vae, mask, noise_mask=False)
    (sigmas,) = nodes["BasicScheduler"].get_sigmas(model, "simple", 2, 1.0)
    (sampler,) = nodes["KSamplerSelect"].get_sampler("euler")
    (guider,) = nodes["BasicGuider"].get_guider(model, positive)
    (noise,) = nodes["RandomNoise"].get_noise(SEED)
    out, _ = nodes["SamplerCustomAdvanced"].sample(noise, guider, sampler, sigmas, latent)
    image = (positive[0][1]["concat_latent_image"] - FLUX_SHIFT) * FLUX_SCALE
    folded = positive[0][1]["concat_mask"].reshape(1, 1, 64, 64).reshape(1, 8, 8, 8, 8).permute(0, 2, 4, 1, 3)
    concat = torch.cat([image, folded.reshape(1, 64, 8, 8)], dim=1)
    reference = _flux_reference("fill", 2, 3.5, math.exp(1.15), concat=concat)
    torch.testing.assert_close(out["samples"], reference, atol=2e-4, rtol=1e-4)


def test_kontext_reference_latents_are_appended_as_index_1_tokens(nodes):
    from visionatrix.diffusion.dit import calls

    files = dit_files.modules()
    model = files.flux["dev"]
    generator = torch.Generator().manual_seed(9)
    x, ref = torch.randn(1, 16, 8, 6, generator=generator), torch.randn(1, 16, 6, 8, generator=generator)
    context, pooled = torch.randn(1, 5, 512, generator=generator), torch.randn(1, 64, generator=generator)
    with torch.no_grad():
        ours = calls.flux_call(model, x, torch.tensor([0.7]), context, {"pooled": pooled,
                                                                         "guidance": torch.tensor([3.0])}, [ref])
        ids = torch.cat([calls.image_ids(8, 6), calls.image_ids(6, 8, index=1)])
        full = model(hidden_states=torch.cat([calls.pack(x), calls.pack(ref)], dim=1), encoder_hidden_states=context,
                     pooled_projections=pooled, timestep=torch.tensor([0.7]), img_ids=ids,
                     txt_ids=torch.zeros(5, 3), guidance=torch.tensor([3.0]), return_dict=False)[0]
    torch.testing.assert_close(ours, calls.unpack(full[:, :12], 8, 6), atol=1e-5, rtol=1e-5)
    (latent,) = nodes["EmptySD3LatentImage"].generate(48, 64, 1)
    (cond,) = nodes["ReferenceLatent"].append([[context, {"pooled_output": pooled}]], {"samples": ref})
    assert cond[0][1]["reference_latents"][0] is ref and latent["samples"].shape == (1, 16, 8, 6)


def test_odd_latent_sides_are_padded_and_cropped_back():
    from visionatrix.diffusion.dit import calls

    model = dit_files.modules().flux["schnell"]
    x = torch.randn(1, 16, 5, 7, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = calls.flux_call(model, x, torch.tensor([0.5]), torch.randn(1, 4, 512), {"pooled": torch.randn(1, 64)})
    assert out.shape == x.shape and out.isfinite().all()


def _sd3_reference(cond, pooled, uncond, upooled, steps: int, cfg: float, shift: float = 3.0) -> torch.Tensor:
    model = dit_files.modules().sd3["sd35_large"]
    with torch.no_grad():
        torch.manual_seed(SEED)
        x = torch.randn(1, 16, 8, 8)
        sigmas = [shift * t / (1 + (shift - 1) * t) for t in (1 - i / steps for i in range(steps))] + [0.0]
        for sigma, sigma_next in itertools.pairwise(sigmas):
            v_cond, v_uncond = (model(hidden_states=x, encoder_hidden_states=c, pooled_projections=p,
                                      timestep=torch.tensor([sigma * 1000]), return_dict=False)[0]
                                for c, p in ((cond, pooled), (uncond, upooled)))  # 154 and 77 tokens
            guided = v_uncond + cfg * (v_cond - v_uncond)
            x = x + (sigma_next - sigma) * guided
    return x / 1.5305 + 0.0609


def test_sd35_checkpoint_and_triple_clip_match_a_direct_cfg_loop(nodes):
    files = dit_files.modules()
    model, clip, vae = nodes["CheckpointLoaderSimple"].load_checkpoint("sd3.5_large.safetensors")
    assert clip is None and vae is not None
    (clip,) = nodes["TripleCLIPLoader"].load_clip("t5xxl_fp16.safetensors", "clip_g.safetensors",
                                                    "clip_l.safetensors")
    (positive,) = nodes["CLIPTextEncode"].encode(clip, PROMPT)
    (negative,) = nodes["CLIPTextEncodeSD3"].encode(clip, "", "", "", "none")
    with torch.no_grad():
        l_out = files.clip_l(input_ids=_clip_ids(PROMPT), output_hidden_states=True)
        g_ids = _clip_ids(PROMPT)
        g_ids[0, (g_ids[0] == 49407).nonzero()[1:, 0]] = 0  # CLIP-G pads with 0 after the end token
        g_out = files.clip_g(input_ids=g_ids, output_hidden_states=True)
        clip_rows = torch.cat([l_out.hidden_states[-2], g_out.hidden_states[-2]], dim=-1)
        clip_rows = torch.nn.functional.pad(clip_rows, (0, 512 - clip_rows.shape[-1]))
        t5_rows = files.t5(input_ids=_t5_ids(PROMPT, 77)).last_hidden_state
        cond = torch.cat([clip_rows, t5_rows], dim=1)
        pooled = torch.cat([l_out.pooler_output, g_out.text_embeds], dim=-1)
    torch.testing.assert_close(positive[0][0], cond, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(positive[0][1]["pooled_output"], pooled, atol=1e-5, rtol=1e-5)
    assert torch.equal(negative[0][0], torch.zeros(1, 77, 512))
    assert torch.equal(negative[0][1]["pooled_output"], torch.zeros(1, sd3_fixtures.POOLED))
    (latent,) = nodes["EmptySD3LatentImage"].generate(64, 64, 1)
    (out,) = nodes["KSampler"].sample(model, SEED, 2, 4.0, "euler", "simple", positive, negative, latent)
    reference = _sd3_reference(cond, pooled, negative[0][0], negative[0][1]["pooled_output"], 2, 4.0)
    torch.testing.assert_close(out["samples"], reference, atol=2e-4, rtol=1e-4)
    (image,) = nodes["VAEDecode"].decode(vae, out)
    assert image.shape == (1, 64, 64, 3)


def test_skip_layer_guidance_adds_a_pass_without_the_given_blocks(nodes):
    model, _, _ = nodes["CheckpointLoaderSimple"].load_checkpoint("sd3.5_large.safetensors")
    (clip,) = nodes["TripleCLIPLoader"].load_clip("clip_l.safetensors", "clip_g.safetensors",
                                                    "t5xxl_fp16.safetensors")
    (positive,) = nodes["CLIPTextEncode"].encode(clip, PROMPT)
    (negative,) = nodes["CLIPTextEncode"].encode(clip, "")
    (latent,) = nodes["EmptySD3LatentImage"].generate(64, 64, 1)
    (plain,) = nodes["KSampler"].sample(model, SEED, 2, 3.0, "euler", "simple", positive, negative, latent)
    (outside,) = nodes["SkipLayerGuidanceSD3"].skip_guidance_sd3(model, "1", 3.0, 0.9, 1.0)
    (same,) = nodes["KSampler"].sample(outside, SEED, 2, 3.0, "euler", "simple", positive, negative, latent)
    assert torch.equal(plain["samples"], same["samples"])
    (slg,) = nodes["SkipLayerGuidanceSD3"].skip_guidance_sd3(model, "1", 3.0, 0.0, 1.0)
    (guided,) = nodes["KSampler"].sample(slg, SEED, 2, 3.0, "euler", "simple", positive, negative, latent)
    assert not torch.allclose(plain["samples"], guided["samples"], atol=1e-4)
    with pytest.raises(InvalidInput, match=r"layers: blocks \[7\] are not among this model's 2 joint blocks"):
        nodes["SkipLayerGuidanceSD3"].skip_guidance_sd3(model, "7", 3.0, 0.0, 1.0)


def test_all_in_one_flux_checkpoint_gives_model_clip_and_vae(nodes):
    model, clip, vae = nodes["CheckpointLoaderSimple"].load_checkpoint("flux1-dev-aio.safetensors")
    assert str(model.family) == "flux" and set(clip.encoders) == {"clip_l", "t5xxl"} and vae is not None
    samples, _ = _flux_run(nodes, model, steps=2, guidance=3.5)
    torch.testing.assert_close(samples, _flux_reference("dev", 2, 3.5, math.exp(1.15)), atol=2e-4, rtol=1e-4)


def test_wrong_pairings_are_named(nodes):
    with pytest.raises(InvalidInput, match="type flux takes one CLIP-L and one T5-XXL"):
        nodes["DualCLIPLoader"].load_clip("clip_l.safetensors", "clip_g.safetensors", "flux")
    with pytest.raises(InvalidInput, match="not supported yet"):
        nodes["DualCLIPLoader"].load_clip("clip_l.safetensors", "t5xxl_fp16.safetensors", "hidream")
    (model,) = nodes["UNETLoader"].load_unet("flux1-dev.safetensors", "default")
    with pytest.raises(InvalidInput, match="weight_dtype"):
        nodes["UNETLoader"].load_unet("flux1-dev.safetensors", "int4")
    (clip,) = nodes["TripleCLIPLoader"].load_clip("clip_l.safetensors", "clip_g.safetensors",
                                                    "t5xxl_fp16.safetensors")
    with pytest.raises(InvalidInput, match="CLIPTextEncodeFlux takes a Flux CLIP"):
        nodes["CLIPTextEncodeFlux"].encode(clip, "a", "b", 3.5)
    (cond,) = nodes["CLIPTextEncode"].encode(clip, PROMPT)
    (latent,) = nodes["EmptySD3LatentImage"].generate(64, 64, 1)
    with pytest.raises(InvalidInput, match="does not fit this flux model"):
        nodes["KSampler"].sample(model, 1, 1, 1.0, "euler", "simple", cond, cond, latent)
    with pytest.raises(InvalidInput, match="takes a flux model"):
        nodes["ModelSamplingFlux"].patch(nodes["CheckpointLoaderSimple"].load_checkpoint(
            "sd3.5_large.safetensors")[0], 1.15, 0.5, 1024, 1024)


def test_all_in_one_sd35_medium_carries_its_three_text_encoders(nodes):
    name = "sd3.5_medium_incl_clips_t5xxlfp8scaled.safetensors"
    model, clip, vae = nodes["CheckpointLoaderSimple"].load_checkpoint(name)
    assert set(clip.encoders) == {"clip_l", "clip_g", "t5xxl"} and "t5xxl" in clip.tokenizers
    assert model.unet.config.dual_attention_layers == (0,)
    (positive,) = nodes["CLIPTextEncode"].encode(clip, PROMPT)
    assert positive[0][0].shape == (1, 77 + 77, 512) and positive[0][1]["pooled_output"].shape == (1, 384)
    (latent,) = nodes["EmptySD3LatentImage"].generate(64, 64, 1)
    (out,) = nodes["KSampler"].sample(model, SEED, 1, 1.0, "euler", "simple", positive, positive, latent)
    (image,) = nodes["VAEDecode"].decode(vae, out)
    assert image.shape == (1, 64, 64, 3) and image.isfinite().all()
