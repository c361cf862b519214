"""The model manager: loads a file once across tasks, keeps models within RAM/VRAM budgets, frees on request; bad
files are refused with an error naming them."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from tests import model_fixtures
from visionatrix.errors import ModelFileError
from visionatrix.nodes import model_manager
from visionatrix.nodes.model_manager import ModelManager, model_bytes
from visionatrix.nodes.state_dicts import read_state_dict

MiB = 1024**2


def build_module(state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A module holding the tensors as parameters: enough for the manager, which only moves and measures it."""
    module = torch.nn.Module()
    for index, (_, value) in enumerate(sorted(state_dict.items())):
        module.register_parameter(f"p{index}", torch.nn.Parameter(value.clone(), requires_grad=False))
    return module


def spandrel_build(state_dict: dict[str, torch.Tensor]) -> Any:
    import spandrel

    return spandrel.ModelLoader().load_from_state_dict(state_dict)


def weights_file(path: Path, megabytes: float, dtype: torch.dtype = torch.float32) -> Path:
    count = int(megabytes * MiB) // torch.tensor([], dtype=dtype).element_size()
    save_file({"weight": torch.arange(count, dtype=dtype)}, path)
    return path


@pytest.fixture
def manager() -> ModelManager:
    return ModelManager(device="cpu", ram_budget_bytes=64 * MiB, vram_reserve_bytes=0)


def test_a_second_load_of_the_same_file_loads_nothing(manager, tmp_path):
    path = weights_file(tmp_path / "a.safetensors", 1)
    builds = []

    def build(state_dict):
        builds.append(1)
        return build_module(state_dict)

    first = manager.load(path, build, kind="test")
    second = manager.load(path, build, kind="test")
    assert second is first
    assert (manager.loads, manager.hits, len(builds)) == (1, 1, 1)
    assert manager.owns(first)


def test_a_changed_file_or_another_kind_or_dtype_is_a_new_load(manager, tmp_path):
    path = weights_file(tmp_path / "a.safetensors", 1)
    first = manager.load(path, build_module, kind="test")
    assert manager.load(path, build_module, kind="other") is not first
    assert manager.load(path, build_module, kind="test", dtype=torch.float16) is not first
    weights_file(path, 1)
    os.utime(path, ns=(1, os.stat(path).st_mtime_ns + 1_000_000))
    assert manager.load(path, build_module, kind="test") is not first
    assert manager.loads == 4 and manager.hits == 0


def test_models_on_the_cpu_are_float32_and_their_size_is_their_tensors(manager, tmp_path):
    path = weights_file(tmp_path / "half.safetensors", 1, torch.float16)
    module = manager.load(path, build_module, kind="test")
    reference = read_state_dict(path)["weight"].float()
    assert module.p0.dtype == torch.float32 and torch.equal(module.p0, reference)
    assert manager.stats()["loaded"] == [{"name": "half.safetensors", "kind": "test",
                                          "bytes": reference.nelement() * 4, "where": "ram"}]


def test_spandrel_models_are_placed_and_counted(manager, tmp_path):
    files = model_fixtures.write_good_models(tmp_path)
    descriptor = manager.load(files["esrgan_x4.safetensors"], spandrel_build, kind="upscale")
    expected = sum(t.nelement() * 4 for t in model_fixtures.good_models()["esrgan_x4"][0].values())
    assert model_bytes(descriptor) == expected
    assert manager.stats()["ram_bytes"] == expected and descriptor.dtype == torch.float32


def test_over_the_ram_budget_the_least_recently_used_model_is_dropped(tmp_path):
    dropped: list[Any] = []
    manager = ModelManager(device="cpu", ram_budget_bytes=int(2.5 * MiB), vram_reserve_bytes=0,
                           on_drop=dropped.append)
    a, b, c = (weights_file(tmp_path / f"{n}.safetensors", 1) for n in "abc")
    model_a = manager.load(a, build_module, kind="test")
    manager.load(b, build_module, kind="test")
    manager.load(a, build_module, kind="test")  # a is now the most recently used
    model_b = manager.load(b, build_module, kind="test")
    manager.load(a, build_module, kind="test")
    manager.load(c, build_module, kind="test")
    assert dropped == [model_b]
    assert [m["name"] for m in manager.stats()["loaded"]] == ["c.safetensors", "a.safetensors"]
    assert manager.owns(model_a) and not manager.owns(model_b)
    assert (manager.loads, manager.hits, manager.evictions) == (3, 3, 1)
    manager.load(b, build_module, kind="test")
    assert manager.loads == 4


def test_a_model_bigger_than_the_whole_budget_is_returned_but_not_kept(tmp_path):
    manager = ModelManager(device="cpu", ram_budget_bytes=MiB // 2, vram_reserve_bytes=0)
    path = weights_file(tmp_path / "big.safetensors", 1)
    module = manager.load(path, build_module, kind="test")
    assert module.p0.nelement() == MiB // 4
    assert manager.stats()["loaded"] == [] and not manager.owns(module)
    manager.load(path, build_module, kind="test")
    assert manager.loads == 2


def test_a_model_in_use_is_not_dropped(tmp_path):
    manager = ModelManager(device="cpu", ram_budget_bytes=int(1.5 * MiB), vram_reserve_bytes=0)
    a, b = weights_file(tmp_path / "a.safetensors", 1), weights_file(tmp_path / "b.safetensors", 1)
    model_a = manager.load(a, build_module, kind="test")
    with manager.use(model_a) as held:
        assert held is model_a
        manager.load(b, build_module, kind="test")
        assert manager.owns(model_a)
        assert manager.free() == 0 and manager.owns(model_a)
    manager.load(b, build_module, kind="test")
    assert not manager.owns(model_a)


def test_free_unloads_everything_and_reports_the_bytes(tmp_path):
    dropped: list[Any] = []
    manager = ModelManager(device="cpu", ram_budget_bytes=64 * MiB, vram_reserve_bytes=0, on_drop=dropped.append)
    a, b = weights_file(tmp_path / "a.safetensors", 1), weights_file(tmp_path / "b.safetensors", 2)
    models = [manager.load(p, build_module, kind="test") for p in (a, b)]
    assert manager.free() == 3 * MiB
    assert manager.stats()["loaded"] == [] and manager.stats()["ram_bytes"] == 0
    assert dropped == models
    manager.load(a, build_module, kind="test")
    assert manager.loads == 3


def test_concurrent_loads_of_one_file_build_it_once(manager, tmp_path):
    path = weights_file(tmp_path / "a.safetensors", 1)
    results: list[Any] = []
    barrier = threading.Barrier(8)

    def load() -> None:
        barrier.wait()
        results.append(manager.load(path, build_module, kind="test"))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert manager.loads == 1 and manager.hits == 7
    assert all(result is results[0] for result in results)


def test_pickled_checkpoints_load_weights_only_and_unwrap_training_containers(tmp_path):
    state = model_fixtures.good_models()["realesrgan_x2"][0]
    torch.save({"params_ema": state, "iter": 5}, tmp_path / "wrapped.pth")
    loaded = read_state_dict(tmp_path / "wrapped.pth")
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "parallel.pt")
    assert read_state_dict(tmp_path / "parallel.pt").keys() == state.keys()


@pytest.mark.parametrize(("kind", "reason"), [
    ("text_pth", "not a readable torch checkpoint"),
    ("text_safetensors", "not a readable safetensors file"),
    ("truncated", "not a readable safetensors file"),
    ("code_pickle", "the pickle needs code to load (GLOBAL print): refused"),
    ("wrong_kind", "not an upscale model"),
])
def test_bad_files_are_refused_with_an_error_naming_them(manager, tmp_path, capsys, kind, reason):
    path = model_fixtures.write_bad_files(tmp_path)[kind]
    capsys.readouterr()
    with pytest.raises(ModelFileError) as caught:
        manager.load(path, spandrel_build, kind="upscale")
    assert caught.value.path == str(path) and str(path) in str(caught.value)
    assert reason in caught.value.reason
    assert "this pickle ran code" not in capsys.readouterr().out
    assert manager.stats()["loaded"] == []


def test_missing_files_and_unknown_formats_are_named(manager, tmp_path):
    with pytest.raises(ModelFileError, match=r"gone\.safetensors: cannot be read"):
        manager.load(tmp_path / "gone.safetensors", build_module, kind="test")
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    with pytest.raises(ModelFileError, match=r"model\.onnx: unsupported model format '.onnx'"):
        manager.load(tmp_path / "model.onnx", build_module, kind="test")


def test_precision_policy_prefers_half_on_cuda_and_float32_on_cpu():
    class Descriptor:
        supports_half = True
        supports_bfloat16 = True

    assert model_manager.pick_dtype(Descriptor(), None, cuda=False) is torch.float32
    assert model_manager.pick_dtype(Descriptor(), None, cuda=True) is torch.float16
    assert model_manager.pick_dtype(object(), None, cuda=True) is torch.float32
    assert model_manager.pick_dtype(Descriptor(), torch.bfloat16, cuda=False) is torch.bfloat16


class FakeGpu:
    """Stands in for one GPU: ``place`` records where each module is; free VRAM is total minus what is on it."""

    def __init__(self, total_bytes: int) -> None:
        self.total_bytes = total_bytes
        self.where: dict[int, tuple[Any, str]] = {}

    def place(self, model: Any, device: str, dtype: Any) -> None:
        if dtype is not None:
            model.to(dtype=dtype)
        self.where[id(model)] = (model, device)

    def free_bytes(self, device: str) -> int:
        used = sum(model_bytes(m) for m, where in self.where.values() if where.startswith("cuda"))
        return self.total_bytes - used

    def device_of(self, model: Any) -> str:
        return self.where[id(model)][1]


def test_on_cuda_least_recently_used_models_move_to_ram_then_drop(tmp_path, monkeypatch):
    gpu = FakeGpu(total_bytes=3 * MiB)
    monkeypatch.setattr(model_manager, "_place", gpu.place)
    monkeypatch.setattr(model_manager, "_free_vram_bytes", gpu.free_bytes)
    monkeypatch.setattr(model_manager, "_empty_cuda_cache", lambda cuda: None)
    manager = ModelManager(device="cuda:0", ram_budget_bytes=int(1.5 * MiB), vram_reserve_bytes=MiB)
    a, b, c = (weights_file(tmp_path / f"{n}.safetensors", 1) for n in "abc")
    model_a = manager.load(a, build_module, kind="test")
    model_b = manager.load(b, build_module, kind="test")  # 2 MiB usable: a and b both fit
    assert gpu.device_of(model_a) == gpu.device_of(model_b) == "cuda:0"
    model_c = manager.load(c, build_module, kind="test")  # a (least recent) moves to RAM
    assert (gpu.device_of(model_a), gpu.device_of(model_c)) == ("cpu", "cuda:0")
    assert manager.stats()["vram_bytes"] == 2 * MiB and manager.stats()["ram_bytes"] == MiB
    assert manager.load(a, build_module, kind="test") is model_a  # a hit brings it back, b goes to RAM
    assert (gpu.device_of(model_a), gpu.device_of(model_b)) == ("cuda:0", "cpu")
    assert manager.loads == 3 and manager.evictions == 2
    with manager.use(model_b):
        assert gpu.device_of(model_b) == "cuda:0" and gpu.device_of(model_c) == "cpu"
    assert model_c.p0.dtype == torch.float32  # a plain module does not say it supports half precision
