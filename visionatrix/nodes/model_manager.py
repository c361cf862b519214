"""The model manager: one per executor (worker), the only way node code loads weights.

A model file is read and built once and kept across tasks, keyed by the resolved path, the file's size and
modification time, the kind of model, the requested dtype and the device; a second load of the same file is a
``stat()`` and a dict lookup. Models live in two tiers: on a CUDA device they are placed in VRAM, and the
least-recently-used ones move to RAM when a new model needs room (free VRAM minus ``vram_reserve_bytes``); models
in RAM (the CPU device's models, or ones moved off the GPU) are dropped least-recently-used first once their bytes
pass ``ram_budget_bytes``. A model bigger than the whole RAM budget is handed to its caller and not kept.

Big models: a model that does not fit in VRAM even after every idle model moved to RAM (:func:`placement`) is not
refused: it stays in RAM with diffusers' group offloading (block level, one block per group), which brings each
block onto the GPU for its forward and takes it back after; it is slower (the weights cross the bus on every call)
but runs on GPUs smaller than the model. Such a model stays group-offloaded while it is kept (``where`` is
``"offload"``; its bytes count as RAM). :meth:`ModelManager.offload` moves an idle model to RAM at once (text
encoders after encoding), so the next big model finds the room.

Precision: float32 on the CPU; on CUDA fp16 when the model says it supports it (spandrel's ``supports_half``),
else bf16 (``supports_bfloat16``, on GPUs that have it), else float32. A caller may ask for a dtype.

Only one node runs at a time per executor, so a model is never moved while it computes as long as nodes wrap their
work in :meth:`ModelManager.use`, which also brings a model moved to RAM back onto the device. Thread-safe: one lock
guards the records (``free`` may come from the server's thread). Imports torch only when called.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from visionatrix.errors import ModelFileError
from visionatrix.nodes.state_dicts import read_state_dict

T = TypeVar("T")
Key = tuple[str, int, int, str, str | None, str, bool]


@dataclass
class _Record:
    key: Key
    model: Any
    name: str
    kind: str
    nbytes: int
    where: str  # "vram" | "ram" | "offload" (in RAM, group-offloaded onto the GPU block by block)
    in_use: int = 0


class ModelManager:
    """Loads model files once and keeps them within RAM and VRAM budgets (see the module docstring)."""

    def __init__(self, *, device: str, ram_budget_bytes: int, vram_reserve_bytes: int,
                 on_drop: Callable[[Any], None] | None = None) -> None:
        self.device = device
        self.ram_budget_bytes = ram_budget_bytes
        self.vram_reserve_bytes = vram_reserve_bytes
        self.on_drop = on_drop
        """Called with each model the manager lets go of (the executor drops output-cache entries holding it)."""
        self.loads = 0
        self.hits = 0
        self.evictions = 0
        """Each step down a tier: VRAM to RAM, or RAM to dropped."""
        self.offloads = 0
        """Models moved from VRAM to RAM on request (:meth:`offload`)."""
        self.group_offloads = 0
        """Models too big for the GPU placed with group offloading."""
        self._records: OrderedDict[Key, _Record] = OrderedDict()  # least recently used first
        self._by_id: dict[int, _Record] = {}
        self._lock = threading.RLock()
        self._cuda = device.startswith("cuda")

    def load(self, path: Path, build: Callable[[dict[str, Any]], T], *, kind: str, dtype: Any = None,
             prefixes: tuple[str, ...] | None = None, cast: bool = True) -> T:
        """The model built by ``build`` from the tensors of ``path``, placed on this manager's device; loaded once
        per (file version, kind, dtype, cast). ``prefixes``: ``build`` gets only the tensors under them (one
        component of an all-in-one file; ``kind`` must then name the component). ``cast=False``: the model is moved
        but keeps the dtypes ``build`` gave it (a model whose weights ``build`` stored in fp8 with
        :func:`visionatrix.diffusion.checkpoints.fp8.store_in_fp8`; ``dtype`` then only tells the cache entries
        apart). Bad files and builds that fail raise :class:`ModelFileError`."""
        try:
            stat = os.stat(path)
        except OSError as exc:
            raise ModelFileError(path, f"cannot be read: {exc.strerror or exc}") from exc
        key: Key = (str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns, kind,
                    None if dtype is None else str(dtype), self.device, cast)
        with self._lock:
            record = self._records.get(key)
            if record is not None:
                self.hits += 1
                self._records.move_to_end(key)
                if self._cuda and record.where == "ram":
                    self._to_vram(record)
                model: T = record.model
                return model
            self.loads += 1
            return self._load_new(key, Path(path), build, kind, dtype, prefixes, cast)

    def _load_new(self, key: Key, path: Path, build: Callable[[dict[str, Any]], T], kind: str, dtype: Any,
                  prefixes: tuple[str, ...] | None = None, cast: bool = True) -> T:
        state_dict = read_state_dict(path, prefixes)
        try:
            model = build(state_dict)
        except ModelFileError:
            raise
        except Exception as exc:  # spandrel's UnsupportedModelError, shape mismatches, a builder's own checks
            article = "an" if kind[:1].lower() in "aeiou" else "a"
            raise ModelFileError(path, f"not {article} {kind} model: {exc or type(exc).__name__}") from exc
        finally:
            del state_dict
        _place(model, "cpu", pick_dtype(model, dtype, self._cuda) if cast else None)
        record = _Record(key, model, path.name, kind, model_bytes(model), "ram")
        if self._cuda:
            self._to_vram(record)
        if record.where != "vram" and record.nbytes > self.ram_budget_bytes:
            return model  # bigger than the whole RAM budget: the caller gets it, the manager keeps nothing
        self._records[key] = record
        self._by_id[id(model)] = record
        self._trim_ram()
        return model

    def owns(self, model: object) -> bool:
        """Whether ``model`` is one the manager keeps (and accounts for)."""
        return id(model) in self._by_id

    @contextlib.contextmanager
    def use(self, model: T) -> Iterator[T]:
        """Hold ``model`` on the device while the block runs: it is not moved or dropped meanwhile, and comes back
        from RAM first if it was moved there. A model the manager does not keep is yielded as it is."""
        with self._lock:
            record = self._by_id.get(id(model))
            if record is not None:
                record.in_use += 1
                self._records.move_to_end(record.key)
                if self._cuda and record.where == "ram":
                    self._to_vram(record)
        try:
            yield model
        finally:
            if record is not None:
                with self._lock:
                    record.in_use -= 1

    def offload(self, model: object) -> bool:
        """Move ``model`` from VRAM to RAM now (a text encoder once its prompt is encoded); True when it moved.
        Nothing happens on a CPU device, for a model the manager does not keep, one in use or one not in VRAM."""
        with self._lock:
            record = self._by_id.get(id(model))
            if not self._cuda or record is None or record.where != "vram" or record.in_use:
                return False
            _place(record.model, "cpu", None)
            record.where = "ram"
            self.offloads += 1
            self._trim_ram()
        _empty_cuda_cache(True)
        return True

    def free(self) -> int:
        """Drop every model not in use right now; returns the bytes released."""
        with self._lock:
            released = 0
            for record in [r for r in self._records.values() if r.in_use == 0]:
                released += record.nbytes
                self._drop(record)
        _empty_cuda_cache(self._cuda)
        return released

    def stats(self) -> dict[str, Any]:
        with self._lock:
            loaded = [{"name": r.name, "kind": r.kind, "bytes": r.nbytes, "where": r.where}
                      for r in reversed(self._records.values())]
            return {"loaded": loaded, "ram_bytes": self._bytes_in("ram", "offload"),
                    "vram_bytes": self._bytes_in("vram"), "loads": self.loads, "hits": self.hits,
                    "evictions": self.evictions, "offloads": self.offloads, "group_offloads": self.group_offloads}

    def _bytes_in(self, *where: str) -> int:
        return sum(r.nbytes for r in self._records.values() if r.where in where)

    def _to_vram(self, record: _Record) -> None:
        """Move ``record`` onto the GPU, first moving least-recently-used idle models to RAM until it fits; one that
        cannot fit even then is group-offloaded (every idle model moved to RAM to leave it the most room)."""
        idle = [r for r in self._records.values() if r.where == "vram" and r.in_use == 0 and r is not record]
        where = placement(record.nbytes, free_vram_bytes=_free_vram_bytes(self.device),
                          idle_vram_bytes=sum(r.nbytes for r in idle), reserve_bytes=self.vram_reserve_bytes)
        for victim in idle:
            if where == "vram" and _free_vram_bytes(self.device) - self.vram_reserve_bytes >= record.nbytes:
                break
            _place(victim.model, "cpu", None)
            victim.where = "ram"
            self.evictions += 1
            _empty_cuda_cache(True)
        if where == "vram":
            _place(record.model, self.device, None)
        else:
            _group_offload(record.model, self.device)
            self.group_offloads += 1
        record.where = where
        self._trim_ram()

    def _trim_ram(self) -> None:
        """Drop least-recently-used idle models in RAM while RAM holds more than the budget."""
        excess = self._bytes_in("ram", "offload") - self.ram_budget_bytes
        for victim in [r for r in self._records.values() if r.where != "vram" and r.in_use == 0]:
            if excess <= 0:
                break
            excess -= victim.nbytes
            self.evictions += 1
            self._drop(victim)

    def _drop(self, record: _Record) -> None:
        self._records.pop(record.key, None)
        self._by_id.pop(id(record.model), None)
        if self.on_drop is not None:
            self.on_drop(record.model)


def _module_of(model: Any) -> Any:
    """The ``torch.nn.Module`` behind ``model``: itself, or a descriptor's ``.model`` (spandrel)."""
    inner = getattr(model, "model", None)
    return inner if hasattr(inner, "parameters") else model


def model_bytes(model: Any) -> int:
    """Bytes of the parameters and buffers of ``model`` (a module or a descriptor wrapping one); 0 for others."""
    module = _module_of(model)
    if not hasattr(module, "parameters"):
        return 0
    tensors = {id(t): t for t in (*module.parameters(), *module.buffers())}
    return sum(t.element_size() * t.nelement() for t in tensors.values())


def placement(model_bytes: int, *, free_vram_bytes: int, idle_vram_bytes: int, reserve_bytes: int) -> str:
    """Where a model of ``model_bytes`` goes on a GPU with ``free_vram_bytes`` free, ``idle_vram_bytes`` held by
    idle models that may move to RAM, and ``reserve_bytes`` kept for activations: ``"vram"`` when it fits once the
    idle models are gone, else ``"offload"`` (group offloading: its blocks visit the GPU one at a time)."""
    return "vram" if model_bytes <= free_vram_bytes + idle_vram_bytes - reserve_bytes else "offload"


def _group_offload(model: Any, device: str) -> None:
    """Keep ``model`` in RAM and run it on ``device`` block by block (diffusers' group offloading)."""
    from diffusers.hooks import apply_group_offloading

    module = _module_of(model)
    module.to(device="cpu")
    apply_group_offloading(module, onload_device=device, offload_device="cpu", offload_type="block_level",
                           num_blocks_per_group=1)
    if hasattr(module, "eval"):
        module.eval()


def pick_dtype(model: Any, requested: Any, cuda: bool) -> Any:
    import torch

    if requested is not None:
        return requested
    if not cuda:
        return torch.float32
    if getattr(model, "supports_half", False):
        return torch.float16
    if getattr(model, "supports_bfloat16", False) and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def _place(model: Any, device: str, dtype: Any) -> None:
    """Move (and cast) ``model`` in place; spandrel descriptors and modules both take ``to(device=, dtype=)``."""
    if dtype is not None:
        model.to(device=device, dtype=dtype)
    else:
        model.to(device=device)
    if hasattr(model, "eval"):
        model.eval()


def _free_vram_bytes(device: str) -> int:
    """Free bytes on the GPU, counting memory torch's caching allocator holds but does not use."""
    import torch

    index = torch.device(device).index or 0
    free_bytes, _total = torch.cuda.mem_get_info(index)
    slack = torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
    return int(free_bytes + slack)


def _empty_cuda_cache(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.empty_cache()
