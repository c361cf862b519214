"""Vae on the tiny fixture AutoencoderKL: encode/decode equal the autoencoder called directly (ComfyUI's crop, 2x-1,
posterior mode, clamp), batches in slices, bad inputs named, the float32 retry of a reduced-precision decode that
overflows, and tiled calls against a tiling written apart from the module (ComfyUI's three blended tilings)."""

from __future__ import annotations

import copy

import pytest
import torch

from visionatrix.diffusion import vae as vae_module
from visionatrix.diffusion.vae import Vae
from visionatrix.errors import Interrupted, InvalidInput


def pixels(batch: int, height: int, width: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, height, width, channels, generator=torch.Generator().manual_seed(seed))


def smooth(batch: int, height: int, width: int) -> torch.Tensor:
    ys = torch.linspace(0, 1, height)[:, None]
    xs = torch.linspace(0, 1, width)[None, :]
    planes = [0.5 + 0.4 * torch.sin(3 * xs + 2 * ys + k) for k in range(3)]
    return torch.stack(planes, dim=-1).expand(batch, height, width, 3).contiguous()


def direct_encode(autoencoder, image: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return autoencoder.encode(image[..., :3].movedim(-1, 1) * 2 - 1).latent_dist.mode()


def direct_decode(autoencoder, latent: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return ((autoencoder.decode(latent).sample + 1) / 2).clamp(0, 1).movedim(1, -1)


def test_encode_crops_to_multiples_of_8_around_the_centre_and_takes_the_posterior_mode(ctx, vae, autoencoder):
    image = pixels(2, 67, 70, channels=4)
    got = vae.encode(image)
    # 67 = 64 + 3 -> rows 1..64; 70 = 64 + 6 -> columns 3..66; the alpha channel is dropped
    expected = direct_encode(autoencoder, image[:, 1:65, 3:67])
    assert got.shape == (2, 4, 8, 8) and got.dtype == torch.float32 and got.device.type == "cpu"
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert vae.downscale_ratio == 8 and vae.latent_channels == 4


def test_decode_maps_back_to_0_1_and_clamps(ctx, vae, autoencoder):
    latent = 3 * torch.randn(2, 4, 6, 7, generator=torch.Generator().manual_seed(1))
    got = vae.decode(latent)
    assert got.shape == (2, 48, 56, 3) and got.dtype == torch.float32
    torch.testing.assert_close(got, direct_decode(autoencoder, latent), atol=1e-5, rtol=1e-5)
    assert got.min() >= 0 and got.max() <= 1 and (got == 0).any() and (got == 1).any()


def test_batches_run_in_slices_with_the_same_result(ctx, vae, monkeypatch):
    latent = torch.randn(3, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    whole = vae.decode(latent)
    calls: list[int] = []
    original = Vae._decode_fn

    def counting(self, z):
        calls.append(z.shape[0])
        return original(self, z)

    monkeypatch.setattr(Vae, "_decode_fn", counting)
    monkeypatch.setattr(vae_module, "CPU_BUDGET_BYTES", 1)  # room for one item per call
    sliced = vae.decode(latent)
    assert calls == [1, 1, 1]
    torch.testing.assert_close(sliced, whole, atol=1e-5, rtol=1e-5)


def test_an_interrupt_stops_between_slices(ctx, vae, monkeypatch):
    monkeypatch.setattr(vae_module, "CPU_BUDGET_BYTES", 1)
    ctx.interrupt_event.set()
    with pytest.raises(Interrupted):
        vae.encode(pixels(2, 16, 16))


@pytest.mark.parametrize(("value", "message"), [
    (torch.rand(16, 16, 3), "expected an IMAGE"),
    (torch.rand(1, 16, 16, 2), "2 channels"),
    (torch.rand(1, 4, 16, 3), "smaller than the VAE's 8x8"),
    ("image", "got str"),
])
def test_pixels_that_are_not_an_rgb_image_name_the_input(ctx, vae, value, message):
    with pytest.raises(InvalidInput, match=message) as caught:
        vae.encode(value)
    assert caught.value.input_name == "pixels"


@pytest.mark.parametrize(("value", "message"), [
    (torch.zeros(1, 16, 4, 4), "16 channels does not fit this VAE, which takes 4"),
    (torch.zeros(4, 4, 4), "expected a latent"),
    (torch.zeros(0, 4, 4, 4), "empty latent"),
])
def test_latents_that_do_not_fit_name_the_input(ctx, vae, value, message):
    with pytest.raises(InvalidInput, match=message) as caught:
        vae.decode(value)
    assert caught.value.input_name == "samples"


def test_a_reduced_precision_decode_that_overflows_is_run_again_in_float32(ctx, autoencoder):
    module = copy.deepcopy(autoencoder).to(torch.bfloat16)
    before = {key: value.clone() for key, value in module.state_dict().items()}

    def overflow_in_bf16(_module, _inputs, output):
        return output * float("inf") if output.dtype == torch.bfloat16 else output

    module.decoder.register_forward_hook(overflow_in_bf16)
    latent = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(3))
    got = Vae(module).decode(latent)
    assert torch.isfinite(got).all()
    reference = copy.deepcopy(module).float()
    torch.testing.assert_close(got, direct_decode(reference, latent), atol=1e-5, rtol=1e-5)
    assert next(module.parameters()).dtype == torch.bfloat16  # cast back, bit for bit
    assert all(torch.equal(before[key], value) for key, value in module.state_dict().items())


def test_a_bf16_module_computes_in_bf16_and_returns_float32(ctx, autoencoder):
    module = copy.deepcopy(autoencoder).to(torch.bfloat16)
    image = pixels(1, 16, 16)
    got = Vae(module).encode(image)
    assert got.dtype == torch.float32
    with torch.no_grad():
        expected = module.encode(image.movedim(-1, 1).to(torch.bfloat16) * 2 - 1).latent_dist.mode().float()
    torch.testing.assert_close(got, expected, atol=0.05, rtol=0.05)


# -- tiled --------------------------------------------------------------------------------------------------------


def reference_pass(run, x: torch.Tensor, tile_h: int, tile_w: int, overlap: int, scale: float) -> torch.Tensor:
    """One tiling written out plainly: tiles at 0, step, 2 step, ... (the last pulled back to end at the edge);
    each result weighted by per-row and per-column factors (t + 1) / feather on its first and last feather cells."""
    _, _, height, width = x.shape
    if height <= tile_h and width <= tile_w:
        return run(x)

    def starts(size: int, tile: int) -> list[int]:
        if size <= tile:
            return [0]
        found, start = [], 0
        while start < size - overlap:
            found.append(min(start, size - tile))
            start += tile - overlap
        return found

    feather = round(overlap * scale)
    total = weight = None
    for top in starts(height, tile_h):
        for left in starts(width, tile_w):
            part = run(x[:, :, top:top + tile_h, left:left + tile_w])
            if total is None:
                shape = (1, part.shape[1], round(height * scale), round(width * scale))
                total, weight = torch.zeros(shape), torch.zeros(shape)
            mask = torch.ones(part.shape[-2:])
            for axis in (0, 1):
                length = mask.shape[axis]
                if feather >= length:
                    continue
                for t in range(feather):
                    factor = (t + 1) / feather
                    for index in (t, length - 1 - t):
                        if axis == 0:
                            mask[index, :] *= factor
                        else:
                            mask[:, index] *= factor
            y, x0 = round(top * scale), round(left * scale)
            total[..., y:y + part.shape[-2], x0:x0 + part.shape[-1]] += part * mask
            weight[..., y:y + part.shape[-2], x0:x0 + part.shape[-1]] += mask
    return total / weight


def test_tiled_decode_is_the_mean_of_three_blended_tilings(ctx, vae, autoencoder):
    latent = torch.randn(1, 4, 8, 6, generator=torch.Generator().manual_seed(4))

    def run(z):
        with torch.no_grad():
            return autoencoder.decode(z).sample

    # tile 64 px = 8 cells, overlap 16 px = 2 cells; tilings (16, 4), (4, 16), (8, 8) cells
    passes = [reference_pass(run, latent, h, w, 2, 8) for h, w in ((16, 4), (4, 16), (8, 8))]
    expected = (((passes[0] + passes[1] + passes[2]) / 3 + 1) / 2).clamp(0, 1).movedim(1, -1)
    got = vae.decode_tiled(latent, tile_size=64, overlap=16)
    assert got.shape == (1, 64, 48, 3)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    total = ctx.progress_calls[-1][1]
    assert ctx.progress_calls == [(i, total) for i in range(1, int(total) + 1)]
    assert total == 1 * 2 + 3 * 1 + 1 * 1  # rows x columns of tiles per tiling: (16, 4), (4, 16), (8, 8) cells


def test_tiled_encode_is_the_mean_of_three_blended_tilings(ctx, vae, autoencoder):
    image = pixels(1, 48, 40, seed=5)
    x = image.movedim(-1, 1)

    def run(part):
        with torch.no_grad():
            return autoencoder.encode(part * 2 - 1).latent_dist.mode()

    passes = [reference_pass(run, x, h, w, 8, 1 / 8) for h, w in ((32, 32), (16, 64), (64, 16))]
    got = vae.encode_tiled(image, tile_size=32, overlap=8)
    torch.testing.assert_close(got, (passes[0] + passes[1] + passes[2]) / 3, atol=1e-5, rtol=1e-5)


def test_an_image_within_one_tile_is_encoded_and_decoded_as_untiled(ctx, vae):
    image = pixels(2, 16, 24, seed=6)
    torch.testing.assert_close(vae.encode_tiled(image, 512, 64), vae.encode(image), atol=1e-5, rtol=1e-5)
    latent = vae.encode(image)
    torch.testing.assert_close(vae.decode_tiled(latent, 512, 64), vae.decode(latent), atol=1e-5, rtol=1e-5)


class LocalAutoencoder(torch.nn.Module):
    """A stand-in with AutoencoderKL's interface whose encoder and decoder see only their own 8 x 8 patch (plus, with
    ``reach``, a 3 x 3 neighbourhood of latent cells): tiling can change nothing but the cells near tile edges."""

    def __init__(self, reach: bool) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(8)
        self.config = type("Config", (), {"block_out_channels": (8, 8, 8, 8), "latent_channels": 4})()
        self.down = torch.nn.Conv2d(3, 4, 8, stride=8)
        self.mix = torch.nn.Conv2d(4, 4, 3, padding=1) if reach else torch.nn.Identity()
        self.up = torch.nn.ConvTranspose2d(4, 3, 8, stride=8)
        with torch.no_grad():
            for parameter in self.parameters():
                parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))

    def encode(self, x):
        mode = self.mix(self.down(x))
        return type("Output", (), {"latent_dist": type("Dist", (), {"mode": lambda _self: mode})()})()

    def decode(self, z):
        return type("Output", (), {"sample": torch.tanh(self.up(self.mix(z)))})()


def test_tiles_of_a_patchwise_autoencoder_blend_back_to_the_untiled_result(ctx):
    local = Vae(LocalAutoencoder(reach=False))
    image = pixels(1, 80, 136, seed=9)
    torch.testing.assert_close(local.encode_tiled(image, 64, 16), local.encode(image), atol=1e-5, rtol=1e-5)
    latent = local.encode(image)
    torch.testing.assert_close(local.decode_tiled(latent, 64, 16), local.decode(latent), atol=1e-5, rtol=1e-5)


def test_tiled_results_stay_close_to_untiled_on_a_smooth_image_and_the_overlap_hides_seams(ctx):
    local = Vae(LocalAutoencoder(reach=True))
    image = smooth(1, 256, 256)
    whole = local.encode(image)
    decoded = local.decode(whole)

    def errors(overlap: int) -> tuple[float, float]:
        encoded = float((local.encode_tiled(image, 192, overlap) - whole).abs().mean() / whole.abs().mean())
        spread = (decoded - decoded.mean()).abs().mean()
        return encoded, float((local.decode_tiled(whole, 192, overlap) - decoded).abs().mean() / spread)

    (encoded, decoded_error), (seamed_encoded, seamed_decoded) = errors(48), errors(0)
    assert encoded < 0.04 and decoded_error < 0.01
    assert encoded < seamed_encoded / 2 and decoded_error < seamed_decoded / 2


def test_an_overlap_above_a_quarter_of_the_tile_is_lowered_to_a_quarter(ctx):
    local = Vae(LocalAutoencoder(reach=True))
    latent = torch.randn(1, 4, 12, 12, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(local.decode_tiled(latent, 64, 64), local.decode_tiled(latent, 64, 16))
    assert not torch.allclose(local.decode_tiled(latent, 64, 8), local.decode_tiled(latent, 64, 16))


def test_tile_starts_cover_the_axis_and_end_at_the_edge():
    assert vae_module.tile_starts(100, 64, 8) == [0, 36]
    assert vae_module.tile_starts(130, 64, 16) == [0, 48, 66]
    assert vae_module.tile_starts(64, 64, 16) == [0]


def test_out_of_memory_retries_tiled_as_comfyui(ctx, monkeypatch):
    local = Vae(LocalAutoencoder(reach=True))
    image = pixels(1, 560, 600, seed=10)  # beyond one 512 px tile
    latent = local.encode(image)
    expected_image, expected_latent = local.decode_tiled(latent, 512, 128), local.encode_tiled(image, 512, 64)

    def out_of_memory(*_args, **_kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(Vae, "_sliced", out_of_memory)
    torch.testing.assert_close(local.decode(latent), expected_image)
    torch.testing.assert_close(local.encode(image), expected_latent)


def test_out_of_memory_even_in_tiles_is_a_clear_model_error(ctx, monkeypatch):
    from visionatrix.errors import ModelError

    def out_of_memory(*_args, **_kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(Vae, "_sliced", out_of_memory)
    monkeypatch.setattr(vae_module, "tiled_pass", out_of_memory)
    local = Vae(LocalAutoencoder(reach=False), name="sdxl_vae.safetensors")
    with pytest.raises(ModelError, match=r"out of GPU memory while decoding 2 image\(s\) of 96x64 with "
                                         r"sdxl_vae\.safetensors, even in tiles"):
        local.decode(torch.zeros(2, 4, 8, 12))
    with pytest.raises(ModelError, match="while encoding 1 image"):
        local.encode_tiled(pixels(1, 16, 16), 64, 16)
