"""ComfyUI's *scaled* fp8 checkpoints (``sd3.5_large_fp8_scaled.safetensors``) made from an ordinary state dict.

The layout (as :mod:`visionatrix.diffusion.checkpoints.fp8` reads it): every quantized ``X.weight`` is stored in
``float8_e4m3fn`` divided by a per-tensor scale, a float32 ``X.scale_weight`` (one element) beside it holds that
scale (the real weight is ``weight.float() * scale_weight``), and a marker tensor ``<prefix>scaled_fp8`` of the fp8
dtype (empty) says the file is scaled. Only the linear weights (2-D ``.weight``) of the model under ``prefix`` are
quantized, as in the published file; convolutions, norms, biases, embeddings and everything outside the prefix (the
VAE, text encoders) stay as they are.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

PREFIX = "model.diffusion_model."
MARKER = "scaled_fp8"


def scaled_fp8(state: Mapping[str, torch.Tensor], *, prefix: str = PREFIX,
               dtype: torch.dtype = torch.float8_e4m3fn) -> dict[str, torch.Tensor]:
    """``state`` as a scaled fp8 file: the linear weights under ``prefix`` quantized with a per-tensor scale (their
    largest magnitude over the fp8 dtype's largest value), their ``scale_weight`` beside them, the marker added."""
    largest = torch.finfo(dtype).max
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith(prefix) and key.endswith(".weight") and value.ndim == 2 and value.is_floating_point():
            peak = float(value.detach().abs().max())
            scale = torch.tensor(peak / largest if peak > 0 else 1.0, dtype=torch.float32)
            out[key] = (value.detach().to(torch.float32) / scale).to(dtype).contiguous()
            out[key.removesuffix(".weight") + ".scale_weight"] = scale.reshape(1)
        else:
            out[key] = value
    out[prefix + MARKER] = torch.empty(0, dtype=dtype)
    return out


def dequantized(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The float32 weights a scaled fp8 ``state`` stands for (the reference a loader must reproduce)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(("." + MARKER, ".scale_weight")) or key == MARKER:
            continue
        scale = state.get(key.removesuffix(".weight") + ".scale_weight") if key.endswith(".weight") else None
        out[key] = value.to(torch.float32) * scale.to(torch.float32) if scale is not None else value
    return out
