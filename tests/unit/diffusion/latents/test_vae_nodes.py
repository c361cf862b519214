"""VAE nodes: VAELoader on LDM, prefixed-LDM and diffusers-layout files written from the tiny fixture VAE (decodes
equal the original module's), through the model manager; the encode/decode nodes; VAEEncodeForInpaint and
InpaintModelConditioning against their masking math written out here."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from comfy_nodes.diffusion import vae_nodes
from tests import diffusion_fixtures
from visionatrix.diffusion.vae import Vae
from visionatrix.errors import InvalidInput, ModelFileError
from visionatrix.models.folders import ModelFolders
from visionatrix.nodes.context import NodeContext, use
from visionatrix.nodes.model_manager import ModelManager

OLD_NAMES = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory, autoencoder) -> Path:
    root = tmp_path_factory.mktemp("vae_models")
    folder = root / "vae"
    folder.mkdir()
    diffusers = {key: value.contiguous() for key, value in autoencoder.state_dict().items()}
    ldm = {key: value.contiguous() for key, value in diffusion_fixtures.vae_to_ldm(diffusers).items()}
    save_file(ldm, str(folder / "ldm.safetensors"))
    extracted = {"first_stage_model." + key: value for key, value in ldm.items()}
    extracted["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(4, 4, 3, 3)
    extracted["loss.logvar"] = torch.zeros(())
    save_file(extracted, str(folder / "extracted.safetensors"))
    save_file(diffusers, str(folder / "diffusers.safetensors"))
    old = {}
    for key, value in diffusers.items():
        for new, previous in OLD_NAMES.items():
            key = key.replace(f".attentions.0.{new}.", f".attentions.0.{previous}.")
        old[key] = value
    save_file(old, str(folder / "diffusers_old_attention.safetensors"))
    save_file({"conv_first.weight": torch.zeros(8, 3, 3, 3), "body.0.weight": torch.zeros(8, 8, 3, 3)},
              str(folder / "upscaler.safetensors"))
    broken = dict(ldm)
    del broken["decoder.conv_out.bias"]
    save_file(broken, str(folder / "broken.safetensors"))
    return root


@pytest.fixture
def node_ctx(models_dir):
    ctx = NodeContext(model_folders=ModelFolders(models_dir),
                      models=ModelManager(device="cpu", ram_budget_bytes=1 << 30, vram_reserve_bytes=0))
    with use(ctx):
        yield ctx


def decoded(module: torch.nn.Module, latent: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module.decode(latent).sample


@pytest.mark.parametrize("name", ["ldm.safetensors", "extracted.safetensors", "diffusers.safetensors",
                                  "diffusers_old_attention.safetensors"])
def test_vae_files_in_each_layout_load_to_the_same_network(node_ctx, autoencoder, name):
    choices = vae_nodes.VAELoader.INPUT_TYPES()["required"]["vae_name"][0]
    assert name in choices
    (vae,) = vae_nodes.VAELoader().load_vae(name)
    assert isinstance(vae, Vae) and vae.name == name
    assert next(vae.module.parameters()).dtype == torch.float32
    latent = torch.randn(1, 4, 4, 5, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(decoded(vae.module, latent), decoded(autoencoder, latent), atol=1e-5, rtol=1e-5)
    assert vae_nodes.VAELoader().load_vae(name)[0].module is vae.module
    assert (node_ctx.models.loads, node_ctx.models.hits) == (1, 1)


def test_a_file_that_is_not_a_vae_names_what_it_holds(node_ctx):
    with pytest.raises(ModelFileError, match=r"not a VAE: no encoder\.conv_in\.weight .*found 2 tensors under "
                                             r"body: 1, conv_first: 1"):
        vae_nodes.VAELoader().load_vae("upscaler.safetensors")


def test_a_vae_missing_a_weight_names_it(node_ctx):
    with pytest.raises(ModelFileError, match=r"missing 1 \(decoder\.conv_out\.bias\)"):
        vae_nodes.VAELoader().load_vae("broken.safetensors")


def test_a_missing_vae_file_names_the_input_and_folder(node_ctx):
    with pytest.raises(InvalidInput, match=r"'nope\.safetensors' is not in the vae folder") as caught:
        vae_nodes.VAELoader().load_vae("nope.safetensors")
    assert caught.value.input_name == "vae_name"


def test_encode_and_decode_nodes_wrap_latents_as_comfyui_does(vae, autoencoder):
    image = torch.rand(1, 24, 32, 4, generator=torch.Generator().manual_seed(1))
    (latent,) = vae_nodes.VAEEncode().encode(vae, image)
    assert set(latent) == {"samples"} and latent["samples"].shape == (1, 4, 3, 4)
    (decoded_image,) = vae_nodes.VAEDecode().decode(vae, latent)
    torch.testing.assert_close(decoded_image, vae.decode(latent["samples"]))
    (tiled,) = vae_nodes.VAEEncodeTiled().encode(vae, image, 512, 64, 64, 8)
    torch.testing.assert_close(tiled["samples"], latent["samples"], atol=1e-5, rtol=1e-5)
    (tiled_image,) = vae_nodes.VAEDecodeTiled().decode(vae, latent, 512, 64, 64, 8)
    torch.testing.assert_close(tiled_image, decoded_image, atol=1e-5, rtol=1e-5)


def test_nodes_name_a_wrong_vae_or_latent(vae):
    with pytest.raises(InvalidInput, match="expected a VAE") as caught:
        vae_nodes.VAEDecode().decode("vae", {"samples": torch.zeros(1, 4, 2, 2)})
    assert caught.value.input_name == "vae"
    with pytest.raises(InvalidInput, match="expected a LATENT") as caught:
        vae_nodes.VAEDecode().decode(vae, torch.zeros(1, 4, 2, 2))
    assert caught.value.input_name == "samples"


def test_tiled_node_inputs_are_comfyuis():
    decode = vae_nodes.VAEDecodeTiled.INPUT_TYPES()["required"]
    assert decode["tile_size"][1] | {} == {"default": 512, "min": 64, "max": 4096, "step": 32}
    assert decode["overlap"][1] == {"default": 64, "min": 0, "max": 4096, "step": 32}
    assert list(decode) == ["samples", "vae", "tile_size", "overlap", "temporal_size", "temporal_overlap"]
    encode = vae_nodes.VAEEncodeTiled.INPUT_TYPES()["required"]
    assert list(encode) == ["pixels", "vae", "tile_size", "overlap", "temporal_size", "temporal_overlap"]
    inpaint = vae_nodes.VAEEncodeForInpaint.INPUT_TYPES()["required"]
    assert inpaint["grow_mask_by"] == ("INT", {"default": 6, "min": 0, "max": 64, "step": 1})


# -- inpainting ----------------------------------------------------------------------------------------------------


def reference_inpaint_inputs(pixels: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Written out: the mask stretched bilinearly to the image, both cut to multiples of 8 around the centre,
    pixels under mask > 0.5 set to 0.5 (the image is 37 x 45: rows 2..33, columns 2..41)."""
    stretched = F.interpolate(mask[:, None], size=pixels.shape[1:3], mode="bilinear")[:, :, 2:34, 2:42]
    cut = pixels[:, 2:34, 2:42, :3]
    masked = torch.where(stretched[:, 0, :, :, None] > 0.5, torch.full_like(cut, 0.5), cut)
    return masked, stretched


def dilate(mask: torch.Tensor, size: int) -> torch.Tensor:
    """ComfyUI's growth: a size x size box of ones convolved over the rounded mask (padding ceil((size-1)/2),
    the extra row/column of an even size cut off), clamped to 0..1."""
    kernel = torch.ones(1, 1, size, size)
    grown = F.conv2d(mask.round(), kernel, padding=math.ceil((size - 1) / 2)).clamp(0, 1)
    return grown[:, :, :mask.shape[2], :mask.shape[3]].round()


@pytest.mark.parametrize("grow", [0, 1, 5, 6])
def test_vae_encode_for_inpaint_greys_masked_pixels_and_grows_the_noise_mask(vae, grow):
    pixels = torch.rand(1, 37, 45, 3, generator=torch.Generator().manual_seed(2))
    mask = torch.rand(1, 19, 23, generator=torch.Generator().manual_seed(3))
    pixels_before, mask_before = pixels.clone(), mask.clone()
    (latent,) = vae_nodes.VAEEncodeForInpaint().encode(vae, pixels, mask, grow)
    masked, stretched = reference_inpaint_inputs(pixels, mask)
    torch.testing.assert_close(latent["samples"], vae.encode(masked), atol=1e-5, rtol=1e-5)
    expected_mask = stretched.round() if grow == 0 else dilate(stretched, grow)
    assert torch.equal(latent["noise_mask"], expected_mask) and latent["noise_mask"].shape == (1, 1, 32, 40)
    assert torch.equal(pixels, pixels_before) and torch.equal(mask, mask_before)


def test_inpaint_model_conditioning_sets_the_masked_latent_and_mask_on_both_conds(vae):
    pixels = torch.rand(2, 37, 45, 3, generator=torch.Generator().manual_seed(4))
    mask = torch.rand(19, 23, generator=torch.Generator().manual_seed(5))
    cond = torch.randn(1, 77, 64)
    positive = [[cond, {"pooled_output": torch.ones(1, 8)}]]
    negative = [[torch.zeros(1, 77, 64), {}]]
    node = vae_nodes.InpaintModelConditioning()
    pos, neg, latent = node.encode(positive, negative, pixels, vae, mask, True)
    masked, stretched = reference_inpaint_inputs(pixels, mask[None])
    expected_concat = vae.encode(masked)
    for out, source in ((pos, positive), (neg, negative)):
        assert len(out) == 1 and out[0][0] is source[0][0]
        torch.testing.assert_close(out[0][1]["concat_latent_image"], expected_concat, atol=1e-5, rtol=1e-5)
        assert torch.equal(out[0][1]["concat_mask"], stretched)
        assert set(out[0][1]) == set(source[0][1]) | {"concat_latent_image", "concat_mask"}
    assert set(positive[0][1]) == {"pooled_output"} and negative[0][1] == {}  # inputs untouched
    torch.testing.assert_close(latent["samples"], vae.encode(pixels), atol=1e-5, rtol=1e-5)
    assert torch.equal(latent["noise_mask"], stretched)
    _, _, without = node.encode(positive, negative, pixels, vae, mask, False)
    assert set(without) == {"samples"}


def test_a_mask_batch_that_does_not_fit_the_images_is_named(vae):
    with pytest.raises(InvalidInput, match="batch of 3 masks does not match 2 images") as caught:
        vae_nodes.VAEEncodeForInpaint().encode(vae, torch.rand(2, 16, 16, 3), torch.rand(3, 16, 16), 6)
    assert caught.value.input_name == "mask"
