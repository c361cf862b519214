"""The flow-model nodes' own behaviour: latents, shifts, Flux prompts and guidance, Kontext scaling, RemoteVAEDecode."""

from __future__ import annotations

import math

import pytest
import torch

from tests import dit_files
from tests.unit.diffusion.dit.conftest import node_instances
from visionatrix.errors import InvalidInput


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow_nodes")
    dit_files.write_text_encoders(root)
    dit_files.write_vae(root)
    dit_files.write_flux(root, "schnell")
    return root


@pytest.fixture
def nodes(models_dir):
    with node_instances(models_dir) as instances:
        yield instances


def test_empty_sd3_latent_has_16_channels_at_an_eighth_of_the_size(nodes):
    (latent,) = nodes["EmptySD3LatentImage"].generate(1024, 768, 2)
    assert latent["samples"].shape == (2, 16, 96, 128) and not latent["samples"].any()
    with pytest.raises(InvalidInput, match="width"):
        nodes["EmptySD3LatentImage"].generate(4, 64, 1)


def test_model_sampling_nodes_set_the_flow_shift(nodes):
    (model,) = nodes["UNETLoader"].load_unet("flux1-schnell.safetensors", "default")
    assert math.isclose(float(model.model_sampling.sigma(torch.tensor(0.5))), 0.5)  # schnell: shift 1
    (sd3,) = nodes["ModelSamplingSD3"].patch(model, 3.0)
    assert math.isclose(float(sd3.model_sampling.sigma(torch.tensor(0.5))), 0.75, rel_tol=1e-6)
    (aura,) = nodes["ModelSamplingAuraFlow"].patch_aura(model, 1.73)
    assert math.isclose(float(aura.model_sampling.sigma(torch.tensor(0.5))), 1.73 * 0.5 / (1 + 0.73 * 0.5),
                        rel_tol=1e-6)
    for bad in (0.0, float("nan"), "x"):
        with pytest.raises(InvalidInput, match="shift"):
            nodes["ModelSamplingSD3"].patch(model, bad)


def test_clip_text_encode_flux_gives_each_encoder_its_text_and_the_guidance(nodes):
    (clip,) = nodes["DualCLIPLoader"].load_clip("clip_l.safetensors", "t5xxl_fp8_e4m3fn.safetensors", "flux")
    assert clip.encoders["t5xxl"].encoder.block[0].layer[0].SelfAttention.q.weight.dtype == torch.float8_e4m3fn
    (both,) = nodes["CLIPTextEncodeFlux"].encode(clip, "a red dog", "a photo of a cat", 4.0)
    (t5_side,) = nodes["CLIPTextEncode"].encode(clip, "a photo of a cat")
    (l_side,) = nodes["CLIPTextEncode"].encode(clip, "a red dog")
    assert both[0][1]["guidance"] == 4.0
    torch.testing.assert_close(both[0][0], t5_side[0][0])
    torch.testing.assert_close(both[0][1]["pooled_output"], l_side[0][1]["pooled_output"])
    assert both[0][0].shape == (1, 256, 512)  # Flux pads T5 to 256 tokens
    (guided,) = nodes["FluxGuidance"].append(t5_side, 2.0)
    assert guided[0][1]["guidance"] == 2.0 and "guidance" not in t5_side[0][1]


def test_kontext_image_scale_picks_the_closest_training_aspect(nodes):
    image = torch.rand(1, 600, 1000, 3)
    (scaled,) = nodes["FluxKontextImageScale"].scale(image)
    assert scaled.shape == (1, 800, 1328, 3)  # 1328/800 = 1.66 is nearest to 1000/600
    (square,) = nodes["FluxKontextImageScale"].scale(torch.rand(1, 300, 310, 3))
    assert square.shape == (1, 1024, 1024, 3)


def test_remote_vae_decode_decodes_with_the_installed_family_vae(nodes, models_dir):
    latent = {"samples": torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(1))}
    (image,) = nodes["RemoteVAEDecode"].decode(latent, "Flux")
    (vae,) = nodes["VAELoader"].load_vae("ae.safetensors")
    (direct,) = nodes["VAEDecode"].decode(vae, latent)
    assert image.shape == (1, 64, 64, 3)
    torch.testing.assert_close(image, direct)
    with pytest.raises(InvalidInput, match=r"no SDXL VAE is installed: put sdxl_vae\.safetensors in the vae folder"):
        nodes["RemoteVAEDecode"].decode(latent, "SDXL")
    with pytest.raises(InvalidInput, match="unknown VAE type"):
        nodes["RemoteVAEDecode"].decode(latent, "Nope")


def test_clip_loader_names_what_to_use_for_flux_and_hunyuan(nodes):
    with pytest.raises(InvalidInput, match="load both with DualCLIPLoader"):
        nodes["CLIPLoader"].load_clip("t5xxl_fp16.safetensors", "flux")
    with pytest.raises(InvalidInput, match="load with its checkpoint"):
        nodes["CLIPLoader"].load_clip("t5xxl_fp16.safetensors", "hunyuan_dit")
    (clip,) = nodes["CLIPLoader"].load_clip("t5xxl_fp16.safetensors", "sd3")
    (alone,) = nodes["CLIPTextEncode"].encode(clip, "a photo of a cat")
    assert alone[0][0].shape == (1, 77, 512) and not alone[0][1]["pooled_output"].any()  # T5 rows, zero pooled
