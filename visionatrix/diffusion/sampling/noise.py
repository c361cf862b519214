"""Seeded noise: the initial latent noise as ComfyUI draws it, and the per-step noise of stochastic samplers."""

from __future__ import annotations

import warnings
from typing import Protocol

import torch
from torch import Tensor


class NoiseSampler(Protocol):
    """Noise for the step from ``sigma`` to ``sigma_next``, unit variance, shaped like the latent."""

    def __call__(self, sigma: Tensor, sigma_next: Tensor) -> Tensor: ...


def prepare_noise(latent_shape: tuple[int, ...] | torch.Size, seed: int, batch_index: list[int] | None = None,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """One ``randn`` of the whole latent shape from a CPU generator seeded with ``seed``.

    Equal to ``torch.manual_seed(seed); torch.randn(shape)`` without touching the global generator. With
    ``batch_index`` (a latent cut from a bigger batch) one item's noise is drawn for every index from 0 up to the
    highest, in order, and item ``i`` gets the noise of ``batch_index[i]``: the same noise it had in the full batch.
    """
    generator = torch.Generator("cpu").manual_seed(seed)
    shape = tuple(latent_shape)
    if batch_index is None:
        return torch.randn(shape, dtype=dtype, generator=generator, device="cpu")
    if not batch_index or min(batch_index) < 0:
        raise ValueError(f"batch_index must list non-negative indices, got {batch_index}")
    drawn = [torch.randn((1, *shape[1:]), dtype=dtype, generator=generator, device="cpu")
             for _ in range(max(batch_index) + 1)]
    return torch.cat([drawn[i] for i in batch_index])


class AncestralNoiseSampler:
    """Fresh Gaussian noise per step from one generator seeded once (``randn_like`` on the latent's device)."""

    def __init__(self, x: Tensor, seed: int) -> None:
        self._like = x
        self._generator = torch.Generator(x.device).manual_seed(seed)

    def __call__(self, sigma: Tensor, sigma_next: Tensor) -> Tensor:
        x = self._like
        return torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=self._generator)


class BrownianNoiseSampler:
    """Brownian-motion increments over sigma for SDE samplers, from torchsde's ``BrownianTree``.

    The tree spans ``[sigma_min, sigma_max]`` on the CPU, seeded by ``entropy=seed`` (the KSampler seed): the
    increment between two sigmas is the same whatever steps ask for it, so SDE samples keep their character when
    the step count changes. Returned as ``W(sigma_next) - W(sigma)`` over ``sqrt(|sigma_next - sigma|)``
    (unit variance); a list of seeds gives one tree per batch item.
    """

    def __init__(self, x: Tensor, sigma_min: float, sigma_max: float, seed: int | list[int]) -> None:
        import torchsde

        self._device, self._dtype = x.device, x.dtype
        lo, hi = float(sigma_min), float(sigma_max)
        seeds = seed if isinstance(seed, list) else [seed]
        self._batched = isinstance(seed, list)
        w0 = torch.zeros(x.shape[1:] if self._batched else x.shape, dtype=x.dtype, device="cpu")
        self._trees = [torchsde.BrownianTree(lo, w0, hi, entropy=s) for s in seeds]

    def __call__(self, sigma: Tensor, sigma_next: Tensor) -> Tensor:
        a, b = float(sigma), float(sigma_next)
        lo, hi, sign = (a, b, 1.0) if a <= b else (b, a, -1.0)
        with warnings.catch_warnings():  # torchsde rounds its ends and clamps a query just past them, with a warning
            warnings.filterwarnings("ignore", message="Should have", category=UserWarning)
            parts = [tree(lo, hi) for tree in self._trees]
        w = torch.stack(parts) if self._batched else parts[0]
        return (sign * w / abs(hi - lo) ** 0.5).to(self._device, self._dtype)
