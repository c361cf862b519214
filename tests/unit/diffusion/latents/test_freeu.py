"""FreeU v2 on a tiny diffusers UNet: which decoder resnets get (b1, s1) / (b2, s2) (as ComfyUI's output blocks),
the hooked inputs against the formula written out here with numpy's FFT, outputs changed while applied and restored
exactly after, and the FreeU_V2 node."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from comfy_nodes.diffusion import freeu_node
from visionatrix.diffusion import latent_formats
from visionatrix.diffusion.checkpoints.detect import Family
from visionatrix.diffusion.freeu import decoder_resnets, freeu_v2
from visionatrix.diffusion.model import DiffusionModel
from visionatrix.diffusion.sampling import model_sampling
from visionatrix.errors import InvalidInput

B1, B2, S1, S2 = 1.3, 1.4, 0.9, 0.2


@pytest.fixture(scope="module")
def unet():
    """Three levels (32, 64, 128 channels), so both the 4x and the 2x backbone widths occur."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    model = UNet2DConditionModel(block_out_channels=(32, 64, 128), layers_per_block=1, norm_num_groups=32,
                                 down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3,
                                 cross_attention_dim=32, attention_head_dim=8, sample_size=16)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


def run(unet, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(2, 4, 16, 16, generator=generator)
    context = torch.randn(2, 5, 32, generator=generator)
    with torch.no_grad():
        return unet(sample, torch.tensor([500.0, 200.0]), encoder_hidden_states=context).sample


def reference(hidden: torch.Tensor, backbone: int, b: float, s: float) -> torch.Tensor:
    """FreeU v2 on one resnet input, written out with numpy."""
    x = hidden.double().numpy()
    h, skip = x[:, :backbone].copy(), x[:, backbone:]
    mean = h.mean(axis=1, keepdims=True)
    low = mean.min(axis=(1, 2, 3), keepdims=True)
    high = mean.max(axis=(1, 2, 3), keepdims=True)
    h[:, :backbone // 2] *= (b - 1) * (mean - low) / (high - low) + 1
    spectrum = np.fft.fftshift(np.fft.fft2(skip), axes=(-2, -1))
    rows, cols = skip.shape[-2] // 2, skip.shape[-1] // 2
    spectrum[..., rows - 1:rows + 1, cols - 1:cols + 1] *= s
    filtered = np.fft.ifft2(np.fft.ifftshift(spectrum, axes=(-2, -1))).real
    return torch.from_numpy(np.concatenate([h, filtered], axis=1)).float()


def test_backbone_widths_are_comfyuis_output_block_widths_on_sd15():
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        sd15 = UNet2DConditionModel()  # diffusers' defaults are SD1.5's layout
    widths = [backbone for _, backbone in decoder_resnets(sd15)]
    assert widths == [1280, 1280, 1280, 1280, 1280, 1280, 1280, 640, 640, 640, 320, 320]


def test_hooked_resnet_inputs_follow_the_formula(unet):
    resnets = decoder_resnets(unet)
    assert [backbone for _, backbone in resnets] == [128, 128, 128, 64, 64, 32]
    raw: dict[int, torch.Tensor] = {}
    seen: dict[int, torch.Tensor] = {}
    handles = [resnet.register_forward_pre_hook(lambda m, a, i=i: raw.__setitem__(i, a[0].clone()))
               for i, (resnet, _) in enumerate(resnets)]
    try:
        with freeu_v2(unet, B1, B2, S1, S2):
            handles += [resnet.register_forward_pre_hook(lambda m, a, i=i: seen.__setitem__(i, a[0].clone()))
                        for i, (resnet, _) in enumerate(resnets)]
            run(unet)
    finally:
        for handle in handles:
            handle.remove()
    for index, (_, backbone) in enumerate(resnets):
        scale = {128: (B1, S1), 64: (B2, S2)}.get(backbone)
        if scale is None:
            assert torch.equal(seen[index], raw[index])
        else:
            torch.testing.assert_close(seen[index], reference(raw[index], backbone, *scale), atol=1e-5, rtol=1e-4)


def test_outputs_change_while_applied_and_hooks_are_gone_after(unet):
    before = run(unet)
    with freeu_v2(unet, B1, B2, S1, S2) as same:
        assert same is unet
        during = run(unet)
    assert (during - before).abs().max() > 1e-3
    assert torch.equal(run(unet), before)
    assert all(not resnet._forward_pre_hooks for resnet, _ in decoder_resnets(unet))
    with pytest.raises(RuntimeError, match="boom"), freeu_v2(unet, B1, B2, S1, S2):
        raise RuntimeError("boom")
    assert all(not resnet._forward_pre_hooks for resnet, _ in decoder_resnets(unet))


def test_unit_factors_leave_the_output_as_it_was(unet):
    with freeu_v2(unet, 1.0, 1.0, 1.0, 1.0):
        neutral = run(unet)
    torch.testing.assert_close(neutral, run(unet), atol=1e-5, rtol=1e-5)


def test_the_node_sets_the_option_on_a_copy_of_the_model(unet):
    model = DiffusionModel(unet=unet, family=Family.SD1, in_channels=4, model_sampling=model_sampling.discrete(),
                           latent_format=latent_formats.SD1)
    (patched,) = freeu_node.FreeU_V2().patch(model, 1.1, 1.2, 0.5, 0.6)
    assert patched.options["freeu_v2"] == (1.1, 1.2, 0.5, 0.6) and patched.unet is unet
    assert "freeu_v2" not in model.options
    required = freeu_node.FreeU_V2.INPUT_TYPES()["required"]
    assert {k: v[1]["default"] for k, v in required.items() if k != "model"} == {"b1": 1.3, "b2": 1.4, "s1": 0.9,
                                                                                  "s2": 0.2}
    with pytest.raises(InvalidInput) as caught:
        freeu_node.FreeU_V2().patch("model", 1.3, 1.4, 0.9, 0.2)
    assert caught.value.input_name == "model"
