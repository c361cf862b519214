"""The output cache is bounded in estimated bytes of tensors, not only in entries; models the model manager keeps
are not counted (the manager accounts for them) and leave the cache when the manager lets them go."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

from visionatrix.executor.cache import CacheEntry, OutputCache, estimate_bytes
from visionatrix.executor.run import Executor, ExecutorSettings
from visionatrix.nodes.context import current
from visionatrix.nodes.registry import NodeRegistry

MiB = 1024**2


def entry(*values: Any) -> CacheEntry:
    return CacheEntry(outputs=[[value] for value in values], ui=None)


def test_sizes_are_estimated_from_tensors_arrays_and_modules_inside_containers():
    image = torch.zeros(2, 8, 8, 3)
    mask = torch.zeros(8, 8, dtype=torch.float16)
    array = np.zeros((4, 4), dtype=np.uint8)
    module = torch.nn.Linear(4, 2)
    reference = (image.nelement() * 4 + mask.nelement() * 2 + array.nbytes
                 + sum(p.nelement() * 4 for p in module.parameters()))
    assert estimate_bytes([{"a": image, "b": (mask, [array])}, module, "text", 3, None]) == reference
    assert estimate_bytes([image, image, [image]]) == image.nelement() * 4  # the same tensor counted once
    assert estimate_bytes([image, module], owned=lambda value: value is module) == image.nelement() * 4


def test_least_recently_used_entries_go_when_the_bytes_pass_the_budget():
    cache = OutputCache(max_entries=100, max_bytes=3 * MiB)
    tensors = {name: torch.zeros(MiB // 4) for name in "abcd"}  # 1 MiB each
    for name in "abc":
        cache.put(name, entry(tensors[name]))
    assert cache.nbytes == 3 * MiB
    cache.get("a")
    cache.put("d", entry(tensors["d"]))
    assert "b" not in cache and {"a", "c", "d"} <= {s for s in "abcd" if s in cache}
    assert cache.nbytes == 3 * MiB and len(cache) == 3


def test_an_entry_bigger_than_the_whole_budget_is_not_cached():
    cache = OutputCache(max_entries=100, max_bytes=MiB)
    cache.put("small", entry(torch.zeros(16)))
    cache.put("huge", entry(torch.zeros(MiB)))
    assert "huge" not in cache and "small" in cache and cache.nbytes == 64


def test_replacing_an_entry_counts_only_the_new_one_and_clear_resets():
    cache = OutputCache(max_entries=10, max_bytes=MiB)
    cache.put("x", entry(torch.zeros(100)))
    cache.put("x", entry(torch.zeros(10)))
    assert cache.nbytes == 40 and len(cache) == 1
    cache.clear()
    assert cache.nbytes == 0 and len(cache) == 0


def test_entries_holding_a_value_can_be_discarded():
    cache = OutputCache(max_entries=10, max_bytes=MiB)
    model = object()
    cache.put("loader", entry(model))
    cache.put("other", entry(torch.zeros(4)))
    assert cache.discard_holding(model) == 1
    assert "loader" not in cache and "other" in cache


def test_entries_holding_a_wrapped_model_are_discarded_too():
    class Wrapper:  # a MODEL/CLIP value around managed modules, and a VAE value with a module
        def __init__(self, *held: object) -> None:
            self.held = held

        def held_models(self) -> tuple[object, ...]:
            return self.held

    class WithModule:
        def __init__(self, module: object) -> None:
            self.module = module

    cache = OutputCache(max_entries=10, max_bytes=MiB)
    unet, vae, other = object(), object(), object()
    cache.put("checkpoint", entry(Wrapper(unet), None, WithModule(vae)))
    cache.put("other", entry(Wrapper(other)))
    assert cache.discard_holding(vae) == 1
    assert "checkpoint" not in cache and "other" in cache
    assert cache.discard_holding(unet) == 0


# --- through the executor ------------------------------------------------------------------------------------


class BigTensor:
    """Outputs a distinct ``megabytes`` MiB tensor for every seed."""

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"seed": ("INT", {"default": 0}), "megabytes": ("INT", {"default": 1})}}

    def run(self, seed: int, megabytes: int) -> tuple[torch.Tensor]:
        return (torch.full((megabytes * MiB // 4,), float(seed)),)


class LoadWeights:
    """Loads a weights file through the model manager, as model loader nodes do."""

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"path": ("STRING", {"default": ""})}}

    def run(self, path: str) -> tuple[Any]:
        def build(state_dict: dict[str, torch.Tensor]) -> torch.nn.Module:
            module = torch.nn.Module()
            module.register_buffer("weight", state_dict["weight"].clone())
            return module

        return (current().models.load(Path(path), build, kind="test"),)


class Sink:
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"value": ("*", {})}, "optional": {"model": ("MODEL", {})}}

    def run(self, value: Any, model: Any = None) -> dict[str, Any]:
        return {"ui": {"ok": [True]}}


def make_executor(tmp_path: Path, cache_max_bytes: int) -> Executor:
    registry = NodeRegistry()
    registry.register_mappings({"BigTensor": BigTensor, "LoadWeights": LoadWeights, "Sink": Sink}, None,
                               python_module="tests", pack="tests")
    return Executor(registry, ExecutorSettings(device="cpu", output_dir=tmp_path / "out", temp_dir=tmp_path / "tmp",
                                               cache_max_entries=256, cache_max_bytes=cache_max_bytes,
                                               ram_cache_bytes=64 * MiB))


async def test_five_prompts_of_big_outputs_keep_the_cache_within_its_bytes(tmp_path):
    executor = make_executor(tmp_path, cache_max_bytes=20 * MiB)
    try:
        for seed in range(5):
            await executor.execute({"1": {"class_type": "BigTensor", "inputs": {"seed": seed, "megabytes": 8}},
                                    "2": {"class_type": "Sink", "inputs": {"value": ["1", 0]}}})
        assert executor.cache.nbytes == 16 * MiB and len(executor.cache) == 2
        again = await executor.execute({"1": {"class_type": "BigTensor", "inputs": {"seed": 4, "megabytes": 8}},
                                        "2": {"class_type": "Sink", "inputs": {"value": ["1", 0]}}})
        assert again.cached == ["1"]
    finally:
        executor.close()


async def test_models_the_manager_keeps_are_not_counted_and_go_when_it_frees_them(tmp_path):
    weights = tmp_path / "w.safetensors"
    save_file({"weight": torch.zeros(4 * MiB // 4)}, weights)
    executor = make_executor(tmp_path, cache_max_bytes=2 * MiB)
    prompt = {"1": {"class_type": "LoadWeights", "inputs": {"path": str(weights)}},
              "2": {"class_type": "BigTensor", "inputs": {"seed": 1, "megabytes": 1}},
              "3": {"class_type": "Sink", "inputs": {"value": ["2", 0], "model": ["1", 0]}}}
    try:
        await executor.execute(prompt)
        assert executor.cache.nbytes == MiB  # the 4 MiB model is the manager's, not the cache's
        assert sorted((await executor.execute(prompt)).cached) == ["1", "2"]
        assert executor.models.loads == 1 and executor.models.hits == 0
        assert executor.free_models() == 4 * MiB
        assert executor.cache.nbytes == MiB and len(executor.cache) == 1
        result = await executor.execute(prompt)
        assert "1" in result.executed and executor.models.loads == 2
    finally:
        executor.close()


# --- what the cache keeps alive, not what it shows ----------------------------------------------------------------


def real_bytes(cache: OutputCache) -> int:
    """The bytes of every distinct tensor storage the cache's entries reach (the memory they keep alive)."""
    storages: dict[int, int] = {}
    stack: list[Any] = [[entry.outputs, entry.ui] for entry in cache._entries.values()]
    while stack:
        item = stack.pop()
        if isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, torch.Tensor):
            storages[item.untyped_storage().data_ptr()] = item.untyped_storage().nbytes()
    return sum(storages.values())


def test_views_bytes_images_arrays_and_object_attributes_count_the_memory_behind_them():
    from PIL import Image

    from visionatrix.executor.footprint import estimate_bytes as footprint

    big = torch.zeros(1, 512, 512, 3)
    assert footprint(big[:, :8, :8, :]) == big.nelement() * 4  # a crop keeps the whole storage alive
    assert footprint([big, big[..., 0]]) == big.nelement() * 4  # one storage, counted once
    array = np.zeros((100, 100), dtype=np.uint8)
    assert footprint(array[:2]) == 10_000
    assert footprint(b"x" * 1000) == 1000 and footprint(bytearray(10)) == 10
    assert footprint(Image.new("RGB", (10, 20))) == 600

    class Holder:
        def __init__(self) -> None:
            self.samples = {"samples": torch.zeros(256)}

    class Slotted:
        __slots__ = ("value",)

        def __init__(self) -> None:
            self.value = [torch.zeros(64, dtype=torch.uint8)]

    assert footprint([Holder(), Slotted()]) == 256 * 4 + 64


def test_views_are_compacted_before_caching_and_shared_storages_count_once():
    cache = OutputCache(max_entries=10, max_bytes=4 * MiB)
    big = torch.zeros(MiB // 4)  # 1 MiB
    cache.put("big", entry(big))
    cache.put("alias", entry(big.view(2, -1)))  # the same storage under another entry
    assert cache.nbytes == MiB
    cache.put("crop", entry(big[:16]))  # a view of 64 bytes: cached as its own 64 bytes, not the 1 MiB
    assert cache.nbytes == MiB + 64 == real_bytes(cache)
    cache.put("big", entry(torch.zeros(4)))
    assert cache.nbytes == MiB + 64 + 16  # "alias" still holds the 1 MiB storage
    cache._pop("alias")
    assert cache.nbytes == 64 + 16 == real_bytes(cache)


class CropOfBig:
    """Makes a distinct 8 MiB image per seed and returns a 64 px corner of it (a view, as ImageCrop does)."""

    RETURN_TYPES = ("IMAGE", "IMAGE")
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"seed": ("INT", {"default": 0})}}

    def run(self, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        big = torch.full((1, 1024, 683, 3), float(seed))  # ~8 MiB
        return big[:, :64, :64, :], {"samples": big[..., 0], "noise_mask": big[:, :8]}  # type: ignore[return-value]


async def test_after_several_runs_the_cache_keeps_at_most_its_budget_of_real_memory(tmp_path):
    registry = NodeRegistry()
    registry.register_mappings({"CropOfBig": CropOfBig, "Sink": Sink}, None, python_module="tests", pack="tests")
    budget = 20 * MiB
    executor = Executor(registry, ExecutorSettings(device="cpu", output_dir=tmp_path / "out",
                                                   temp_dir=tmp_path / "tmp", cache_max_bytes=budget))
    try:
        for seed in range(6):
            await executor.execute({"1": {"class_type": "CropOfBig", "inputs": {"seed": seed}},
                                    "2": {"class_type": "Sink", "inputs": {"value": ["1", 0]}},
                                    "3": {"class_type": "Sink", "inputs": {"value": ["1", 1]}}})
            assert executor.cache.nbytes == real_bytes(executor.cache) <= budget
        assert len(executor.cache) >= 2  # entries of ~8 MiB each still fit
    finally:
        executor.close()
