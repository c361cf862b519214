"""LoRA weight patches: the change each LoRA module makes to one weight, computed in float32 when applied.

A patch keeps the names of its tensors and the tensors' holder (the loaded file, which the model manager may move
between devices), not the tensors themselves, and computes its delta on the weight's device each time it is applied.

- LoRA / LoCon: ``strength * alpha / rank * (up @ down)`` with ``rank = down.shape[0]`` (alpha defaults to the
  rank); conv factors are flattened (``down [r, in, k, k]``, ``up [out, r, 1, 1]``) and the product reshaped to the
  weight, so 2-D factors also fit a 1x1 conv and 4-D ones a linear layer. With a ``lora_mid`` core (LoCon's Tucker
  form): ``up [out, r] x mid [r, r, k, k] x down [r, in]``.
- LoHa (Hadamard product): ``(w1_a @ w1_b) * (w2_a @ w2_b)``, rank ``w1_b.shape[0]``; Tucker cores ``hada_t1/t2``.
- LoKr (Kronecker product): ``kron(w1, w2)`` with each side whole or a product of two factors (``w2`` also with a
  Tucker core); scaled by ``alpha / rank`` only when a side is factored, as the trainers write it.
- Full difference (``diff``, LyCORIS' "full" and ComfyUI's saved diffs): the tensor is the change itself.
- DoRA (``dora_scale``): the patched weight is renormalised to the stored magnitudes (per output channel when the
  scale has one entry per output), and strength blends between the base and that weight.

A module on a fused tensor of Flux's or SD3's original layout (a ``qkv`` projection; Flux's ``linear1``) patches
several diffusers weights: each patch then takes ``rows`` ``[start, stop)`` of the product (for a plain LoRA, of
``up`` before multiplying), so the patches of one module together add exactly the fused change. ``swap`` exchanges
the halves of those rows (a modulation stored (shift, scale) that diffusers keeps as (scale, shift)).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from torch import Tensor


class TensorSource(Protocol):
    """Where a LoRA's tensors are read from: a dict of the file's tensors or a :class:`LoraFile`."""

    def __getitem__(self, key: str, /) -> Tensor: ...

    def keys(self) -> Iterable[str]: ...


@dataclass(eq=False)
class LoraPatch:
    """One LoRA module's change to the weight ``key``: ``kind`` (``lora``, ``loha``, ``lokr``, ``full``) and the file
    keys of its tensors by role (``up``, ``down``, ``mid``, ``w1_a``, ..., ``diff``, ``dora_scale``)."""

    key: str
    source: TensorSource
    kind: str
    tensors: Mapping[str, str]
    alpha: float | None
    strength: float
    rows: tuple[int, int] | None = None
    """The rows ``[start, stop)`` of the module's product that are this weight's (None: all of them)."""
    swap: bool = False
    """The weight holds those rows with their two halves exchanged."""

    def delta(self, weight: Tensor) -> Tensor:
        """The float32 change to ``weight`` (its shape and device), strength included."""
        diff = (self.alpha_scale() * self._weight_product(weight.device)).reshape(weight.shape)
        if "dora_scale" not in self.tensors:
            return self.strength * diff
        scale = self._get("dora_scale", weight.device)
        if self.rows is not None or self.swap:  # one magnitude per row of the fused tensor: this weight's rows
            scale = self._rows_of(scale)
        return self.strength * _dora(weight.detach().float(), diff, scale)

    def _weight_product(self, device: Any) -> Tensor:
        """This weight's rows of the module's product (a plain LoRA multiplies only its rows of ``up``)."""
        if self.kind == "lora" and "mid" not in self.tensors and (self.rows is not None or self.swap):
            return self._rows_of(self._get("up", device).flatten(1)) @ self._get("down", device).flatten(1)
        return self._rows_of(self._product(device))

    def _rows_of(self, tensor: Tensor) -> Tensor:
        """``tensor``'s rows that are this weight's, 2-D (``tensor`` itself when the patch is not a slice)."""
        if self.rows is None and not self.swap:
            return tensor
        flat = tensor.reshape(tensor.shape[0], -1)
        if self.rows is not None:
            flat = flat[self.rows[0]:self.rows[1]]
        if self.swap:
            first, second = flat.chunk(2)
            flat = torch.cat([second, first])
        return flat

    def alpha_scale(self) -> float:
        rank = self.rank()
        if self.alpha is None or not rank:
            return 1.0
        return self.alpha / rank

    def rank(self) -> int | None:
        """The rank that ``alpha`` divides (None: the file's alpha does not apply)."""
        shape = self.shape_of
        if self.kind == "lora":
            return shape("down")[0]
        if self.kind == "loha":
            return shape("w1_b")[0]
        if self.kind == "full":
            return None
        for role in ("w1_b", "w2_b"):
            if role in self.tensors:
                return shape(role)[0]
        return None

    def product_shape(self) -> tuple[int, int]:
        """(rows, numel) of the delta before reshaping, to check it fits a weight without computing it."""
        shape = self.shape_of
        if self.kind == "full":
            return shape("diff")[0], numel(shape("diff"))
        if self.kind == "lora":
            out, inner = shape("up")[0], numel(shape("down")[1:])
            mid = shape("mid")[2:] if "mid" in self.tensors else ()
            return out, out * inner * numel(mid)
        if self.kind == "loha":
            rows = shape("w1_a")[1] if "t1" in self.tensors else shape("w1_a")[0]
            cols = numel(shape("t1")[2:]) * shape("w1_b")[1] if "t1" in self.tensors else numel(shape("w1_b")[1:])
            return rows, rows * cols
        w1 = shape("w1") if "w1" in self.tensors else (shape("w1_a")[0], shape("w1_b")[1])
        if "w2" in self.tensors:
            w2: tuple[int, ...] = shape("w2")
        elif "t2" in self.tensors:
            w2 = (shape("w2_a")[1], shape("w2_b")[1], *shape("t2")[2:])
        else:
            w2 = (shape("w2_a")[0], *shape("w2_b")[1:])
        return w1[0] * w2[0], numel(w1) * numel(w2)

    def shape_of(self, role: str) -> tuple[int, ...]:
        return tuple(self.source[self.tensors[role]].shape)

    def _get(self, role: str, device: Any) -> Tensor:
        return self.source[self.tensors[role]].to(device=device, dtype=torch.float32)

    def _product(self, device: Any) -> Tensor:
        get = self._get
        if self.kind == "full":
            return get("diff", device)
        if self.kind == "lora":
            up, down = get("up", device).flatten(1), get("down", device).flatten(1)
            if "mid" in self.tensors:
                return torch.einsum("oa,abyx,bc->ocyx", up, get("mid", device), down)
            return up @ down
        if self.kind == "loha":
            if "t1" in self.tensors:
                first = torch.einsum("abyx,ao,bc->ocyx", get("t1", device), get("w1_a", device), get("w1_b", device))
                second = torch.einsum("abyx,ao,bc->ocyx", get("t2", device), get("w2_a", device), get("w2_b", device))
                return first * second
            return (get("w1_a", device) @ get("w1_b", device).flatten(1)) * (
                get("w2_a", device) @ get("w2_b", device).flatten(1))
        w1 = get("w1", device) if "w1" in self.tensors else get("w1_a", device) @ get("w1_b", device)
        if "w2" in self.tensors:
            w2 = get("w2", device)
        elif "t2" in self.tensors:
            w2 = torch.einsum("abyx,ao,bc->ocyx", get("t2", device), get("w2_a", device), get("w2_b", device))
        else:
            w2_b = get("w2_b", device)
            w2 = (get("w2_a", device) @ w2_b.flatten(1)).reshape(-1, *w2_b.shape[1:])
        while w1.ndim < w2.ndim:
            w1 = w1.unsqueeze(-1)
        return torch.kron(w1, w2)


def _dora(weight: Tensor, diff: Tensor, scale: Tensor) -> Tensor:
    """DoRA: the change that takes ``weight`` to ``weight + diff`` rescaled to the magnitudes ``scale``."""
    patched = weight + diff
    flat = patched.reshape(patched.shape[0], -1) if patched.ndim > 1 else patched.reshape(-1, 1)
    if scale.shape[0] == patched.shape[0] or patched.ndim == 1:  # one magnitude per output channel
        norm = flat.norm(dim=1).reshape(-1, *([1] * (patched.ndim - 1)))
    else:  # one per input channel (columns)
        norm = patched.transpose(0, 1).reshape(patched.shape[1], -1).norm(dim=1)
        norm = norm.reshape(1, -1, *([1] * (patched.ndim - 2)))
    magnitude = scale.reshape(norm.shape)
    return patched * (magnitude / norm.clamp_min(1e-12)) - weight


def numel(shape: tuple[int, ...]) -> int:
    total = 1
    for size in shape:
        total *= size
    return total
