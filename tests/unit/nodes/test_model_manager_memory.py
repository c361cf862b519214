"""The model manager's memory tools: models stored in fp8 are moved without a cast, idle models are offloaded to
RAM on request, a model too big for the GPU is group-offloaded instead of failing; the executor reports a run's
peak VRAM (None on a CPU device)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from tests import flux_fixtures
from tests.unit.nodes.test_model_manager import FakeGpu, MiB, build_module, weights_file
from visionatrix.diffusion.checkpoints import fp8
from visionatrix.executor import devices
from visionatrix.nodes import model_manager
from visionatrix.nodes.model_manager import ModelManager, placement

E4M3 = torch.float8_e4m3fn


def build_linear_in_fp8(state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
    layer = torch.nn.Linear(4, 4)
    layer.load_state_dict(state_dict)
    return fp8.store_in_fp8(layer, storage_dtype=E4M3, compute_dtype=torch.float32)


@pytest.fixture
def gpu(monkeypatch) -> FakeGpu:
    fake = FakeGpu(total_bytes=3 * MiB)
    monkeypatch.setattr(model_manager, "_place", fake.place)
    monkeypatch.setattr(model_manager, "_free_vram_bytes", fake.free_bytes)
    monkeypatch.setattr(model_manager, "_empty_cuda_cache", lambda cuda: None)
    monkeypatch.setattr(model_manager, "_group_offload", lambda model, device: fake.where.__setitem__(
        id(model), (model, f"offload:{device}")))
    return fake


def test_without_a_cast_a_model_keeps_its_fp8_weights_and_is_its_own_cache_entry(tmp_path):
    path = tmp_path / "linear.safetensors"
    torch.manual_seed(0)
    save_file(torch.nn.Linear(4, 4).state_dict(), path)
    manager = ModelManager(device="cpu", ram_budget_bytes=64 * MiB, vram_reserve_bytes=0)

    kept = manager.load(path, build_linear_in_fp8, kind="test", dtype=E4M3, cast=False)
    cast = manager.load(path, build_linear_in_fp8, kind="test", dtype=E4M3)

    assert kept.weight.dtype == E4M3 and kept.bias.dtype == torch.float32
    assert cast is not kept and cast.weight.dtype == E4M3  # the requested dtype, applied to every tensor
    assert cast.bias.dtype == E4M3
    assert manager.load(path, build_linear_in_fp8, kind="test", dtype=E4M3, cast=False) is kept
    assert [m["bytes"] for m in manager.stats()["loaded"]] == [16 + 4 * 4, 16 + 4]  # fp8 weight, float32 bias
    assert kept(torch.ones(1, 4)).dtype == torch.float32


def test_offload_moves_an_idle_model_to_ram_and_use_brings_it_back(tmp_path, gpu):
    manager = ModelManager(device="cuda:0", ram_budget_bytes=8 * MiB, vram_reserve_bytes=0)
    model = manager.load(weights_file(tmp_path / "a.safetensors", 1), build_module, kind="test")
    assert gpu.device_of(model) == "cuda:0"

    assert manager.offload(model) is True

    assert gpu.device_of(model) == "cpu" and manager.stats()["offloads"] == 1
    assert manager.stats()["loaded"][0]["where"] == "ram" and manager.stats()["vram_bytes"] == 0
    assert manager.offload(model) is False  # already in RAM
    with manager.use(model):
        assert gpu.device_of(model) == "cuda:0"
        assert manager.offload(model) is False  # in use
    assert manager.offload(build_module({"w": torch.zeros(2)})) is False  # not kept
    assert manager.stats()["offloads"] == 1 and manager.owns(model)


def test_offload_is_nothing_on_a_cpu_device(tmp_path):
    manager = ModelManager(device="cpu", ram_budget_bytes=8 * MiB, vram_reserve_bytes=0)
    model = manager.load(weights_file(tmp_path / "a.safetensors", 1), build_module, kind="test")
    assert manager.offload(model) is False and manager.stats()["offloads"] == 0


@pytest.mark.parametrize(("model_bytes", "free", "idle", "reserve", "where"), [
    (100, 150, 0, 50, "vram"),  # fits as things are
    (100, 149, 0, 50, "offload"),  # the reserve for activations would be gone
    (100, 50, 100, 50, "vram"),  # fits once the idle models move to RAM
    (100, 50, 99, 50, "offload"),  # not even then
    (0, 0, 0, 0, "vram"),
])
def test_placement_offloads_only_what_cannot_fit_after_every_idle_model_left(model_bytes, free, idle, reserve, where):
    assert placement(model_bytes, free_vram_bytes=free, idle_vram_bytes=idle, reserve_bytes=reserve) == where


def test_a_model_too_big_for_the_gpu_is_group_offloaded_and_kept(tmp_path, gpu):
    manager = ModelManager(device="cuda:0", ram_budget_bytes=16 * MiB, vram_reserve_bytes=MiB)
    small = manager.load(weights_file(tmp_path / "small.safetensors", 1), build_module, kind="test")
    big_path = weights_file(tmp_path / "big.safetensors", 3)

    big = manager.load(big_path, build_module, kind="test")

    assert gpu.device_of(big) == "offload:cuda:0"
    assert gpu.device_of(small) == "cpu"  # every idle model leaves the GPU for it
    stats = manager.stats()
    assert [m["where"] for m in stats["loaded"]] == ["offload", "ram"]
    assert (stats["group_offloads"], stats["ram_bytes"], stats["vram_bytes"]) == (1, 4 * MiB, 0)
    assert manager.load(big_path, build_module, kind="test") is big and manager.group_offloads == 1
    with manager.use(big):
        assert gpu.device_of(big) == "offload:cuda:0"
    assert manager.load(tmp_path / "small.safetensors", build_module, kind="test") is small
    assert gpu.device_of(small) == "cuda:0"  # a model that fits still goes onto the GPU


def test_a_model_that_fits_once_idle_models_leave_is_placed_on_the_gpu(tmp_path, gpu):
    manager = ModelManager(device="cuda:0", ram_budget_bytes=16 * MiB, vram_reserve_bytes=MiB)
    first = manager.load(weights_file(tmp_path / "a.safetensors", 1), build_module, kind="test")
    second = manager.load(weights_file(tmp_path / "b.safetensors", 2), build_module, kind="test")
    assert gpu.device_of(second) == "cuda:0" and gpu.device_of(first) == "cpu"
    assert manager.group_offloads == 0


@torch.inference_mode()
def test_group_offloading_runs_an_fp8_stored_flux_transformer_as_before():
    model = fp8.store_in_fp8(copy.deepcopy(flux_fixtures.flux_model("schnell")), storage_dtype=E4M3,
                             compute_dtype=torch.float32)
    offloaded = copy.deepcopy(model)
    inputs = flux_fixtures.flux_inputs(flux_fixtures.flux_config("schnell"))

    model_manager._group_offload(offloaded, "cpu")

    assert hasattr(offloaded, "_diffusers_hook")  # the hooks that bring blocks to the device
    assert offloaded.transformer_blocks[0].attn.to_q.weight.dtype == E4M3
    torch.testing.assert_close(offloaded(**inputs).sample, model(**inputs).sample, rtol=0, atol=0)


async def test_a_run_on_the_cpu_reports_no_peak_vram(tmp_path):
    from tests.unit.executor import fake_nodes
    from tests.unit.executor.test_run import chain
    from visionatrix.executor.run import Executor, ExecutorSettings

    executor = Executor(fake_nodes.make_registry(), ExecutorSettings(device="cpu", output_dir=tmp_path / "out",
                                                                      temp_dir=tmp_path / "tmp"))
    try:
        result = await executor.execute(chain())
    finally:
        executor.close()
    assert result.ui == {"4": {"values": [111]}} and result.peak_vram_bytes is None


def test_peak_vram_is_reset_and_read_on_a_cuda_device(monkeypatch):
    calls: list[Any] = []
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device: calls.append(("reset", device)))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: calls.append(("peak", device)) or 12345)
    devices.reset_peak_vram("cuda:1")
    assert devices.peak_vram_bytes("cuda:1") == 12345
    assert calls == [("reset", torch.device("cuda:1")), ("peak", torch.device("cuda:1"))]
    devices.reset_peak_vram("cpu")
    assert devices.peak_vram_bytes("cpu") is None and len(calls) == 2
