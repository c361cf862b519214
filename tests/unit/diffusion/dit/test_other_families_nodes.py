"""AuraFlow, PixArt and HunyuanDiT through the nodes (CheckpointLoaderSimple / UNETLoader + CLIPLoader, CLIPTextEncode,
KSampler) against a direct loop over the same modules: the families' ``predict`` with the published updates (flow:
``x += (sigma_next - sigma)·v``; eps/v: Euler on the denoised estimate) and the same noise and sigmas."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tests import auraflow_fixtures, dit_files, hunyuan_fixtures, pixart_fixtures, sd3_fixtures
from tests.unit.diffusion.dit.conftest import node_instances
from visionatrix.diffusion.sampling import model_sampling as sampling
from visionatrix.errors import InvalidInput, ModelFileError

SEED = 31
PROMPT = "a photo of a cat"
T5_WIDTH = sd3_fixtures.T5_DIMS["d_model"]


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("other_dit")
    auraflow_fixtures.write_tokenizer(root / "text_encoders" / "llama_tokenizer")
    sd3_fixtures.write(auraflow_fixtures.cached_checkpoint(all_in_one=True).state_dict,
                       root / "checkpoints" / "auraflow_v03.safetensors")
    hunyuan_fixtures.write_bert_vocab(root / "text_encoders" / "hydit_clip_tokenizer")
    sd3_fixtures.write(hunyuan_fixtures.cached_checkpoint("v1.2").state_dict,
                       root / "checkpoints" / "hunyuan_dit_1.2.safetensors")
    dit_files.write_text_encoders(root)
    sd3_fixtures.write(pixart_weights()[0], root / "diffusion_models" / "900mPixartSigma_base.safetensors")
    return root


def pixart_weights() -> tuple[dict[str, torch.Tensor], torch.nn.Module]:
    """A tiny PixArt Sigma taking the shared tiny T5's tokens, in PixArt's own layout."""
    from diffusers import PixArtTransformer2DModel

    config = {**pixart_fixtures.KINDS["sigma"], "caption_channels": T5_WIDTH}
    with torch.random.fork_rng():
        torch.manual_seed(SEED)
        model = dit_files._perturbed(PixArtTransformer2DModel(**config), torch.Generator().manual_seed(SEED)).eval()
    return pixart_fixtures.pixart_from_diffusers(model.state_dict(), token_num=pixart_fixtures.TOKEN_NUM["sigma"],
                                                 caption_channels=T5_WIDTH), model


@pytest.fixture
def nodes(models_dir):
    with node_instances(models_dir) as instances:
        yield instances


def _noise(shape: tuple[int, ...]) -> torch.Tensor:
    torch.manual_seed(SEED)
    return torch.randn(shape)


def _flow_loop(predict, shift: float, steps: int, shape) -> torch.Tensor:
    x = _noise(shape)
    sigmas = [shift * t / (1 + (shift - 1) * t) for t in (1 - i / steps for i in range(steps))] + [0.0]
    for sigma, sigma_next in itertools.pairwise(sigmas):
        x = x + (sigma_next - sigma) * predict(x, torch.tensor([sigma]))
    return x


def _discrete_loop(predict, ms: sampling.ModelSampling, sigmas: torch.Tensor, shape) -> torch.Tensor:
    """Euler on the denoised estimate (eps or v) from ComfyUI's starting point for full denoise."""
    x = _noise(shape) * math.sqrt(1 + float(sigmas[0]) ** 2)
    for sigma, sigma_next in itertools.pairwise(sigmas):
        s = torch.tensor([float(sigma)])
        out = predict(x / math.sqrt(float(sigma) ** 2 + 1), ms.timestep(s))
        denoised = ms.denoised(x, s, out)
        x = x + (x - denoised) / float(sigma) * (float(sigma_next) - float(sigma))
    return x


def test_auraflow_checkpoint_matches_a_direct_flow_loop(nodes, models_dir):
    from visionatrix.diffusion.dit import auraflow
    from visionatrix.diffusion.text.llama_tokenizer import llama_tokenizer

    model, clip, vae = nodes["CheckpointLoaderSimple"].load_checkpoint("auraflow_v03.safetensors")
    assert str(model.family) == "auraflow" and set(clip.encoders) == {"pile_t5xl"} and vae is not None
    (model,) = nodes["ModelSamplingAuraFlow"].patch_aura(model, 1.73)
    (positive,) = nodes["CLIPTextEncode"].encode(clip, PROMPT)
    (negative,) = nodes["CLIPTextEncode"].encode(clip, "")
    (latent,) = nodes["EmptyLatentImage"].generate(64, 64, 1)
    (out,) = nodes["KSampler"].sample(model, SEED, 2, 3.0, "euler", "simple", positive, negative, latent)
    tiny = auraflow_fixtures.cached_checkpoint(all_in_one=True)
    tokenizer = llama_tokenizer(models_dir / "text_encoders" / "llama_tokenizer")
    with torch.no_grad():
        cond = auraflow.encode_auraflow(tiny.components["pile_t5xl"], tokenizer, PROMPT)
        uncond = auraflow.encode_auraflow(tiny.components["pile_t5xl"], tokenizer, "")
        torch.testing.assert_close(positive[0][0], cond, atol=1e-5, rtol=1e-5)

        def predict(x, t):
            c = auraflow.predict(tiny.transformer, x, t, cond)
            u = auraflow.predict(tiny.transformer, x, t, uncond)
            return u + 3.0 * (c - u)

        reference = _flow_loop(predict, 1.73, 2, (1, 4, 8, 8))
    torch.testing.assert_close(out["samples"], reference / 0.13025, atol=2e-4, rtol=1e-4)
    (image,) = nodes["VAEDecode"].decode(vae, out)
    assert image.shape == (1, 64, 64, 3)


def test_pixart_unet_and_t5_clip_match_a_direct_eps_loop(nodes, models_dir):
    from visionatrix.diffusion.dit import pixart
    from visionatrix.diffusion.text.t5_tokenizer import t5_tokenizer

    (model,) = nodes["UNETLoader"].load_unet("900mPixartSigma_base.safetensors", "default")
    (clip,) = nodes["CLIPLoader"].load_clip("t5xxl_fp16.safetensors", "pixart")
    assert str(model.family) == "pixart" and str(clip.family) == "pixart"
    (positive,) = nodes["CLIPTextEncode"].encode(clip, PROMPT)
    (negative,) = nodes["CLIPTextEncode"].encode(clip, "")
    (latent,) = nodes["EmptyLatentImage"].generate(64, 64, 1)
    (out,) = nodes["KSampler"].sample(model, SEED, 2, 4.5, "euler", "normal", positive, negative, latent)
    files, (_, module) = dit_files.modules(), pixart_weights()
    tokenizer = t5_tokenizer(models_dir / "text_encoders" / "t5_tokenizer")
    ms = model.model_sampling
    torch.testing.assert_close(ms.sigmas, pixart.pixart_sigmas())
    with torch.no_grad():
        cond = pixart.encode_pixart(files.t5, tokenizer, PROMPT)
        uncond = pixart.encode_pixart(files.t5, tokenizer, "")
        assert uncond.shape[1] == 1  # PixArt's T5 prompts are not padded: the end token alone
        torch.testing.assert_close(positive[0][0], cond, atol=1e-5, rtol=1e-5)

        def predict(x, t):
            c, u = pixart.predict(module, x, t, cond), pixart.predict(module, x, t, uncond)
            return u + 4.5 * (c - u)

        from visionatrix.diffusion.sampling import schedules

        sigmas = schedules.ksampler_sigmas("normal", ms, 2, "euler", 1.0)
        reference = _discrete_loop(predict, ms, sigmas, (1, 4, 8, 8))
    # PixArt's linear betas start at sigma ~157: float32 sums of that size agree to ~1e-5 relative
    torch.testing.assert_close(out["samples"], reference / 0.13025, atol=2e-4 * float(sigmas[0]), rtol=1e-4)


def test_hunyuan_dit_checkpoint_matches_a_direct_v_loop(nodes):
    from visionatrix.diffusion.dit import hunyuan_dit_predict

    model, clip, vae = nodes["CheckpointLoaderSimple"].load_checkpoint("hunyuan_dit_1.2.safetensors")
    assert str(model.family) == "hunyuan_dit" and set(clip.encoders) == {"hydit_clip", "mt5xl"}
    (positive,) = nodes["CLIPTextEncode"].encode(clip, PROMPT)
    (negative,) = nodes["CLIPTextEncode"].encode(clip, "")
    assert set(positive[0][1]) == {"attention_mask", "conditioning_mt5xl", "attention_mask_mt5xl"}
    (latent,) = nodes["EmptyLatentImage"].generate(64, 64, 1)
    (out,) = nodes["KSampler"].sample(model, SEED, 2, 5.0, "euler", "normal", positive, negative, latent)
    tiny = hunyuan_fixtures.cached_checkpoint("v1.2")
    ms = model.model_sampling

    def conds(entry):
        options = entry[0][1]
        return {"encoder_hidden_states": entry[0][0], "text_embedding_mask": options["attention_mask"],
                "encoder_hidden_states_t5": options["conditioning_mt5xl"],
                "text_embedding_mask_t5": options["attention_mask_mt5xl"]}

    with torch.no_grad():
        def predict(x, t):
            c = hunyuan_dit_predict.predict(tiny.transformer, x, t, conds(positive))
            u = hunyuan_dit_predict.predict(tiny.transformer, x, t, conds(negative))
            return u + 5.0 * (c - u)

        from visionatrix.diffusion.sampling import schedules

        sigmas = schedules.ksampler_sigmas("normal", ms, 2, "euler", 1.0)
        reference = _discrete_loop(predict, ms, sigmas, (1, 4, 8, 8))
    torch.testing.assert_close(out["samples"], reference / 0.13025, atol=2e-4, rtol=1e-4)
    (image,) = nodes["VAEDecode"].decode(vae, out)
    assert image.shape == (1, 64, 64, 3)


def test_missing_tokenizers_and_wrong_clip_types_are_named(nodes):
    (clip,) = nodes["CLIPLoader"].load_clip("t5xxl_fp16.safetensors", "pixart")
    bare = type(clip)(encoders=clip.encoders, family=clip.family)
    with pytest.raises(ModelFileError, match="install the catalog entry T5-V1_1-XXL-Tokenizer"):
        nodes["CLIPTextEncode"].encode(bare, PROMPT)
    with pytest.raises(InvalidInput, match="type pixart takes a T5-XXL file"):
        nodes["CLIPLoader"].load_clip("clip_l.safetensors", "pixart")
