"""Weight patches (LoRA and the like) applied to a shared module for one use, then undone exactly.

A cached base model is never changed for good: a MODEL or CLIP carries its patches as data, and the code that runs
the module wraps the run in :func:`applied`, which adds each patch's delta to its weight (summed in float32 per
weight, then cast once) and copies the saved originals back afterwards, bit for bit, even when the run fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module


class Patch(Protocol):
    """A change to one weight: ``key`` names the parameter in the module's ``named_parameters()``."""

    key: str

    def delta(self, weight: Tensor) -> Tensor:
        """The float32 change to ``weight`` (same shape, on its device), strength included."""
        ...


@contextlib.contextmanager
def applied(module: Module, patches: Sequence[Patch]) -> Iterator[Module]:
    """``module`` with ``patches`` added to its weights for the duration of the block; the originals come back after.

    A patch naming a parameter the module does not have is a ``KeyError`` before anything changes."""
    if not patches:
        yield module
        return
    params = dict(module.named_parameters())
    by_key: dict[str, list[Patch]] = {}
    for patch in patches:
        if patch.key not in params:
            raise KeyError(f"the patch names {patch.key!r}, which the {type(module).__name__} does not have")
        by_key.setdefault(patch.key, []).append(patch)
    saved: dict[str, Tensor] = {}
    try:
        with torch.no_grad():
            for key, group in by_key.items():
                weight = params[key]
                saved[key] = weight.detach().clone()
                total = weight.detach().float()
                for patch in group:
                    total = total + patch.delta(weight).to(device=weight.device, dtype=torch.float32)
                weight.copy_(total.to(weight.dtype))
        yield module
    finally:
        with torch.no_grad():
            for key, original in saved.items():
                params[key].copy_(original)
