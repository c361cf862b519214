"""Smoke tests of the Flux/SD3.5 cases of ``scripts/bench_diffusion.py``: they run on the CPU with tiny models, the
speed ratio is computed from the two timings, and our nodes' latents agree with the direct diffusers loop (the
comparison times the same work). No timing is asserted."""

from __future__ import annotations

import argparse
import math
import os

import pytest
import torch
from safetensors import safe_open

from scripts import bench_diffusion, bench_diffusion_dit
from tests import dit_files

os.environ.setdefault("HF_HUB_OFFLINE", "1")
FLUX_DEV_TINY = {**dit_files.FLUX_TINY, "guidance_embeds": True, "in_channels": 64, "out_channels": 64}


def _check_run(row: dict, latent: list[int]) -> None:
    assert row["latent"] == latent and row["device"] == "cpu"
    assert row["ours_s_per_step"] > 0 and row["direct_s_per_step"] > 0
    assert math.isclose(row["speed_vs_direct"], row["direct_s_per_step"] / row["ours_s_per_step"])
    assert math.isclose(row["ours_steps_per_s"], 1 / row["ours_s_per_step"])
    assert row["output_max_abs"] > 0.1  # a real latent, not zeros on both sides
    assert row["max_abs_diff"] < 1e-4 * max(1.0, row["output_max_abs"])
    for name in ("ours", "direct"):  # the time outside the transformer's forward: some, less than a whole step
        assert 0 < row[f"{name}_outside_ms_per_step"] < 1e3 * row[f"{name}_s_per_step"]


def test_tiny_flux_and_sd35_cases_time_ours_against_a_direct_loop_with_the_same_latent():
    flux, sd3 = bench_diffusion_dit.tiny_dit_cases("cpu", 2, 1, flux_side=128, sd3_side=128)
    assert flux["case"] == "tiny flux dev 128px" and sd3["case"] == "tiny sd3.5 large 128px cfg 4"
    _check_run(flux, [1, 16, 16, 16])
    _check_run(sd3, [1, 16, 16, 16])


def test_direct_flux_loop_follows_the_guidance_it_is_given():
    module = dit_files.modules().flux["dev"]
    generator = torch.Generator().manual_seed(1)
    noise, context = torch.randn(1, 16, 8, 8, generator=generator), torch.randn(1, 5, 512, generator=generator)
    pooled, sigmas = torch.randn(1, 64, generator=generator), torch.tensor([1.0, 0.5, 0.0])
    zero = torch.zeros_like(noise)
    low = bench_diffusion_dit.direct_flux(module, context, pooled, 2.0, noise, zero, sigmas)
    high = bench_diffusion_dit.direct_flux(module, context, pooled, 6.0, noise, zero, sigmas)
    assert float((low - high).abs().max()) > 1e-3


def test_random_bfl_file_is_a_safetensors_file_of_the_given_shapes(tmp_path):
    shapes = {"img_in.weight": (64, 256), "img_in.bias": (64,), "double_blocks.0.img_attn.norm.query_norm.scale": (8,)}
    path = tmp_path / "model.safetensors"
    bench_diffusion_dit.write_random_bfl(path, shapes, "cpu")
    with safe_open(str(path), "pt") as file:
        tensors = {key: file.get_tensor(key) for key in file.keys()}  # noqa: SIM118
    assert {k: tuple(v.shape) for k, v in tensors.items()} == shapes
    assert all(v.dtype == torch.bfloat16 for v in tensors.values())
    assert torch.equal(tensors["double_blocks.0.img_attn.norm.query_norm.scale"], torch.ones(8, dtype=torch.bfloat16))
    assert 0.04 < float(tensors["img_in.weight"].float().std()) < 0.09  # ~ 1/sqrt(256)


def test_flux_size_case_loads_bf16_and_fp8_through_unet_loader_and_reuses_its_file(tmp_path):
    rows = bench_diffusion_dit.flux_size_case("cpu", 2, 1, config=FLUX_DEV_TINY, side=64, text_tokens=8,
                                              cache_dir=tmp_path)
    made, default_load, default_run, fp8_load, fp8_run = rows
    assert not made["reused_file"] and made["parameters"] == sum(
        p.numel() for p in dit_files.modules().flux["dev"].parameters())
    assert made["file_bytes"] > 2 * made["parameters"]
    assert default_load["linear_weight_dtype"] == "torch.float32"  # the CPU computes in float32
    assert fp8_load["linear_weight_dtype"] == "torch.float8_e4m3fn"
    assert fp8_load["weights_bytes"] < default_load["weights_bytes"] / 3
    assert default_load["warm_load_s"] < default_load["cold_load_s"]
    _check_run(default_run, [1, 16, 8, 8])
    _check_run(fp8_run, [1, 16, 8, 8])
    again = bench_diffusion_dit.flux_size_case("cpu", 1, 1, config=FLUX_DEV_TINY, side=64, text_tokens=8,
                                               cache_dir=tmp_path, weight_dtypes=())
    assert again[0]["reused_file"] and again[0]["make_file_s"] == 0.0


def test_flux_gpu_is_refused_without_cuda(monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["bench_diffusion.py", "--device", "cpu", "--flux-gpu", "--skip-tiny"])
    with pytest.raises(SystemExit) as exc:
        bench_diffusion.main()
    assert exc.value.code == 2
    assert "--flux-gpu needs a CUDA GPU" in capsys.readouterr().err


def test_flux_layers_option_reads_two_block_counts():
    assert bench_diffusion.flux_layers("2,4") == (2, 4)
    for bad in ("2", "a,b", "0,0", "-1,3"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"D,S|block counts"):
            bench_diffusion.flux_layers(bad)
