"""A LoRA file held by the model manager on the worker's device (fp16 factors on CUDA) patches a UNet in that
device's dtype like the float32 CPU reference, and the weights come back bit for bit. The CUDA case runs where a GPU
is present (skipped elsewhere); the CPU case runs the same path everywhere."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from tests import diffusion_fixtures, lora_fixtures
from visionatrix.diffusion.lora import LoraFile, lora_patches
from visionatrix.diffusion.patches import applied
from visionatrix.nodes.model_manager import ModelManager

DEVICES = [pytest.param("cpu", torch.float32, 2e-5, id="cpu"),
           pytest.param("cuda", torch.float16, 2e-2, id="cuda-fp16",
                        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


@pytest.mark.parametrize(("device", "dtype", "tolerance"), DEVICES)
def test_manager_held_lora_patches_a_unet_on_its_device(tmp_path: Path, device, dtype, tolerance):
    record: dict[str, tuple[str, str]] = {}
    state = lora_fixtures.make_lora("sd15", "kohya", layers="all", record=record, text=False)
    path = lora_fixtures.write_lora(state, tmp_path, "style")
    manager = ModelManager(device=device, ram_budget_bytes=1 << 30, vram_reserve_bytes=0)
    lora = manager.load(path, LoraFile, kind="lora")
    assert isinstance(lora, LoraFile) and lora[next(iter(state))].device.type == device
    assert lora[next(iter(state))].dtype == (torch.float16 if device == "cuda" else torch.float32)

    base = diffusion_fixtures.cached_checkpoint("sd15").unet
    reference = lora_fixtures.patched_copy(base, [(state, record, 0.75)], "unet")
    unet = copy.deepcopy(base).to(device=device, dtype=dtype)
    before = {key: value.clone() for key, value in unet.state_dict().items()}
    generator = torch.Generator().manual_seed(2)
    inputs = (torch.randn(1, 4, 16, 16, generator=generator), 300, torch.randn(1, 5, 64, generator=generator))
    patches = lora_patches(lora, {"unet": unet}, 0.75, 1.0, path).patches["unet"]
    with torch.no_grad(), manager.use(lora), applied(unet, patches):
        output = unet(*(x.to(device=device, dtype=dtype) if torch.is_tensor(x) else x for x in inputs)).sample
    with torch.no_grad():
        expected = reference(*inputs).sample
    assert (expected - base(*inputs).sample).abs().max() > 0.05
    torch.testing.assert_close(output.float().cpu(), expected, rtol=tolerance, atol=tolerance)
    assert all(torch.equal(value, before[key]) for key, value in unet.state_dict().items())
