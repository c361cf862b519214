"""fp8 weights: reading ComfyUI's fp8 files, and keeping a module's weights in fp8 while it computes in bf16/fp16/fp32.

Files. Plain fp8 files (``t5xxl_fp8_e4m3fn.safetensors``, ``flux1-dev-fp8``) store some tensors as
``float8_e4m3fn`` (or ``float8_e5m2``) and nothing else: a cast gives the weights. ComfyUI's *scaled* fp8 files
(``sd3.5_large_fp8_scaled``, ``t5xxl_fp8_e4m3fn_scaled``, Flux ``fp8_scaled``) carry a marker tensor ``scaled_fp8``
(alone or under the model's prefix, ``model.diffusion_model.scaled_fp8``; empty or one element, its dtype the
file's fp8 dtype) and, beside each quantized ``X.weight`` (fp8), a float32 ``X.scale_weight`` (one element; one
per output channel is accepted too): the real weight is ``weight.float() * scale_weight``. An ``X.scale_input``
only serves fp8 matrix products (activations scaled into fp8) and is dropped here. :func:`dequantize_scaled_fp8`
turns either kind of file into an ordinary state dict in one dtype.

Storage. :func:`store_in_fp8` keeps every ``nn.Linear`` and convolution weight of a module in an fp8 dtype and
casts it to the compute dtype for each forward (a forward pre-hook swaps the cast weight in, a forward hook puts the
fp8 one back, even when the forward fails); every other floating tensor (biases, norms, embeddings) is kept in the
compute dtype. With ``scaled=True`` each weight is stored divided by its own scale (its largest magnitude over the
fp8 dtype's largest value, like the scaled files) and multiplied back per forward: far closer to the original for
small weights, and a scaled file's weights (dequantized, then stored so) come back as the file's own fp8 values.
Modules that transformers keeps in float32 (``_keep_in_fp32_modules``: T5's ``wo``, whose caller casts its input
to ``wo.weight.dtype``) are kept in the compute dtype, not in fp8. The weight stays a parameter named ``weight``
(LoRA patches find it; with ``scaled=True`` a patch must go through :func:`weight_scale_of`).

``WEIGHT_DTYPES`` are ComfyUI's ``weight_dtype`` choices of its diffusion-model loader. ``fp8_e4m3fn_fast`` stores
the same as ``fp8_e4m3fn``: the fp8 matrix product ComfyUI uses for it (``torch._scaled_mm``) is not used here; the
weights are cast and the product runs in the compute dtype. Imports torch only when called.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from visionatrix.errors import InvalidInput, ModelFileError

if TYPE_CHECKING:
    from torch import Tensor, dtype
    from torch.nn import Module

MARKER = "scaled_fp8"
SCALE_WEIGHT = ".scale_weight"
SCALE_INPUT = ".scale_input"
WEIGHT_DTYPE_NAMES = ("default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2")
_STATE = "_vix_fp8"
"""The attribute a stored module carries: its (storage dtype, compute dtype) and the hook handles."""
SCALE_BUFFER = "vix_fp8_scale"
"""The non-persistent buffer holding a ``scaled=True`` weight's scale (float32, one element)."""


def __getattr__(name: str) -> Any:
    if name == "WEIGHT_DTYPES":  # built on first use: no torch at import time
        return weight_dtypes()
    raise AttributeError(name)


def weight_dtypes() -> dict[str, dtype | None]:
    """ComfyUI's ``weight_dtype`` names -> the storage dtype (None: the loader's default precision)."""
    import torch

    return {"default": None, "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e4m3fn_fast": torch.float8_e4m3fn,
            "fp8_e5m2": torch.float8_e5m2}


def weight_dtype_of(name: str) -> dtype | None:
    """The storage dtype a ``weight_dtype`` choice names (None for ``default``); :class:`InvalidInput` otherwise."""
    dtypes = weight_dtypes()
    if name not in dtypes:
        raise InvalidInput("weight_dtype", f"unknown weight dtype {name!r}; expected one of {', '.join(dtypes)}")
    return dtypes[name]


def fp8_dtypes() -> tuple[dtype, ...]:
    import torch

    return (torch.float8_e4m3fn, torch.float8_e5m2)


def is_scaled_fp8(keys: Iterable[str]) -> bool:
    """Whether a file's keys carry ComfyUI's ``scaled_fp8`` marker (alone or under a prefix)."""
    return any(key == MARKER or key.endswith("." + MARKER) for key in keys)


def fp8_dtype_of(state_dict: Mapping[str, Tensor]) -> dtype | None:
    """The fp8 dtype a file's weights are stored in: the ``scaled_fp8`` marker's, else the first fp8 tensor's;
    None when it holds no fp8 tensor (a loader may keep such a file's weights in that dtype: :func:`store_in_fp8`)."""
    kinds = fp8_dtypes()
    marker = next((value for key, value in state_dict.items() if key == MARKER or key.endswith("." + MARKER)), None)
    if marker is not None and marker.dtype in kinds:
        return marker.dtype
    return next((value.dtype for value in state_dict.values() if value.dtype in kinds), None)


def dequantize_scaled_fp8(state_dict: Mapping[str, Tensor], *, dtype: dtype, path: object) -> dict[str, Tensor]:
    """``state_dict`` without the marker and the ``scale_weight``/``scale_input`` tensors, each scaled weight
    dequantized (``weight.float() * scale``) to ``dtype``, every other fp8 tensor cast to ``dtype``; other tensors
    are kept as they are. A scale without its weight, or of a shape that fits neither one element nor one per
    output channel, is a :class:`ModelFileError` naming the key."""
    import torch

    kinds = fp8_dtypes()
    scales = {key[: -len(SCALE_WEIGHT)] + ".weight": key for key in state_dict if key.endswith(SCALE_WEIGHT)}
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        if key == MARKER or key.endswith(("." + MARKER, SCALE_WEIGHT, SCALE_INPUT)):
            continue
        scale_key = scales.get(key)
        if scale_key is not None:
            scale = _fitted_scale(state_dict[scale_key], value, scale_key, path)
            out[key] = (value.to(torch.float32) * scale).to(dtype)
        elif value.dtype in kinds:
            out[key] = value.to(dtype)
        else:
            out[key] = value
    for weight_key, scale_key in scales.items():
        if weight_key not in state_dict:
            raise ModelFileError(path, f"{scale_key}: a weight scale without its weight {weight_key}")
    return out


def _fitted_scale(scale: Tensor, weight: Tensor, key: str, path: object) -> Tensor:
    """``scale`` as float32, shaped to multiply ``weight``: one element, or one per output channel."""
    import torch

    scale = scale.to(torch.float32)
    if scale.numel() == 1:
        return scale.reshape(())
    if weight.ndim >= 1 and scale.numel() == weight.shape[0] and scale.squeeze().ndim == 1:
        return scale.reshape(weight.shape[0], *([1] * (weight.ndim - 1)))
    raise ModelFileError(path, f"{key}: a weight scale of shape {list(scale.shape)} does not fit its weight of "
                               f"shape {list(weight.shape)} (expected one element or one per output channel)")


def stored_layer_types() -> tuple[type, ...]:
    """The layers whose weights :func:`store_in_fp8` keeps in fp8."""
    from torch import nn

    return (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def store_in_fp8(module: Module, *, storage_dtype: dtype, compute_dtype: dtype, scaled: bool = False,
                 skip: Sequence[str] = ()) -> Module:
    """Keep ``module``'s linear and convolution weights in ``storage_dtype`` (fp8) and compute in ``compute_dtype``
    (see the module docstring); ``skip``: regular expressions of module names (``re.search``) kept in the compute
    dtype too. Idempotent: a second call with the same dtypes changes nothing; with others it stores anew (from the
    weights as they are). Returns ``module``; ``module.vix_compute_dtype`` is set (see :func:`compute_dtype_of`)."""
    import torch

    if storage_dtype not in fp8_dtypes():
        raise InvalidInput("weight_dtype", f"{storage_dtype} is not an fp8 dtype")
    keep = _kept_names(module)
    layers = stored_layer_types()
    stored: set[int] = set()  # ids of the tensors kept as they are: fp8 weights and their scales
    for name, sub in module.named_modules():
        if not isinstance(sub, layers) or getattr(sub, "weight", None) is None:
            continue
        assert isinstance(sub, torch.nn.Module)
        if any(part in keep for part in name.split(".")) or any(re.search(pattern, name) for pattern in skip):
            _release(sub, compute_dtype)
            continue
        _store_layer(sub, storage_dtype, compute_dtype, scaled)
        stored.add(id(sub.weight))
    stored.update(id(scale) for sub in module.modules() if (scale := getattr(sub, SCALE_BUFFER, None)) is not None)
    with torch.no_grad():
        for tensor in (*module.parameters(), *module.buffers()):
            if id(tensor) not in stored and tensor.is_floating_point() and tensor.dtype != compute_dtype:
                tensor.data = tensor.data.to(compute_dtype)
    setattr(module, "vix_compute_dtype", compute_dtype)  # noqa: B010 (a module's setattr types it as a tensor)
    return module


def _kept_names(module: Module) -> set[str]:
    names: set[str] = set()
    for sub in module.modules():
        for attr in ("_keep_in_fp32_modules", "_keep_in_fp32_modules_strict"):
            names.update(getattr(sub, attr, None) or ())
    return names


def _store_layer(layer: Module, storage_dtype: dtype, compute_dtype: dtype, scaled: bool) -> None:
    import torch

    state = getattr(layer, _STATE, None)
    if state is not None and state["dtypes"] == (storage_dtype, compute_dtype, scaled):
        return
    weight = _real_weight(layer)
    with torch.no_grad():
        if scaled:
            largest = float(weight.detach().abs().max()) if weight.numel() else 0.0
            scale = torch.tensor(largest / torch.finfo(storage_dtype).max if largest > 0 else 1.0,
                                 dtype=torch.float32, device=weight.device)
            layer.register_buffer(SCALE_BUFFER, scale, persistent=False)
            layer.weight.data = (weight.detach().to(torch.float32) / scale).to(storage_dtype)
        else:
            if hasattr(layer, SCALE_BUFFER):
                delattr(layer, SCALE_BUFFER)
            layer.weight.data = weight.detach().to(storage_dtype)
    _remove_hooks(layer)
    handles = (layer.register_forward_pre_hook(_cast_in),
               layer.register_forward_hook(_put_back, always_call=True))
    setattr(layer, _STATE, {"dtypes": (storage_dtype, compute_dtype, scaled), "compute": compute_dtype,
                            "handles": handles, "stored": None})


def _real_weight(layer: Module) -> Tensor:
    """The layer's weight as real values in float32 (undoing a previous scaled storage)."""
    import torch

    weight: Tensor = layer.get_parameter("weight").detach()
    scale = getattr(layer, SCALE_BUFFER, None)
    if scale is not None and getattr(layer, _STATE, None) is not None:
        return weight.to(torch.float32) * scale
    return weight.to(torch.float32) if weight.dtype in fp8_dtypes() else weight


def _release(layer: Module, compute_dtype: dtype) -> None:
    """Undo a previous fp8 storage of ``layer`` (a call with other ``skip`` patterns): back to the compute dtype."""
    if getattr(layer, _STATE, None) is None:
        return
    weight = _real_weight(layer)
    _remove_hooks(layer)
    delattr(layer, _STATE)
    if hasattr(layer, SCALE_BUFFER):
        delattr(layer, SCALE_BUFFER)
    layer.weight.data = weight.to(compute_dtype)


def _remove_hooks(layer: Module) -> None:
    state = getattr(layer, _STATE, None)
    if state is not None:
        for handle in state["handles"]:
            handle.remove()


def _cast_in(layer: Module, args: tuple[Any, ...]) -> None:
    """Forward pre-hook: the fp8 weight is set aside and its compute-dtype copy (on the input's device) used."""
    state = getattr(layer, _STATE)
    stored = layer.get_parameter("weight")
    device = args[0].device if args and hasattr(args[0], "device") else stored.device
    weight = stored.to(device=device, dtype=state["compute"])
    scale = getattr(layer, SCALE_BUFFER, None)
    if scale is not None:
        weight = weight * scale.to(device=device, dtype=state["compute"])
    state["stored"] = stored
    layer._parameters["weight"] = weight  # type: ignore[assignment] # a plain tensor for the forward's length


def _put_back(layer: Module, args: tuple[Any, ...], output: Any) -> None:
    """Forward hook (also after a failed forward): the fp8 weight goes back in place of its copy."""
    state = getattr(layer, _STATE)
    if state["stored"] is not None:
        layer._parameters["weight"] = state["stored"]
        state["stored"] = None


def weight_scale_of(layer: Module) -> Tensor | None:
    """The scale a ``scaled=True`` layer's stored weight is multiplied by (None: stored unscaled or not in fp8)."""
    return getattr(layer, SCALE_BUFFER, None) if getattr(layer, _STATE, None) is not None else None


def is_stored_in_fp8(module: Module) -> bool:
    """Whether :func:`store_in_fp8` keeps any of ``module``'s weights in fp8."""
    return any(getattr(sub, _STATE, None) is not None for sub in module.modules())


def compute_dtype_of(module: Module) -> dtype:
    """The dtype ``module`` computes in: the one :func:`store_in_fp8` set, else its first floating parameter's.
    Code that casts inputs to "the model's dtype" must use this, not ``next(module.parameters()).dtype``."""
    import torch

    recorded = getattr(module, "vix_compute_dtype", None)
    if recorded is not None:
        return recorded
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
