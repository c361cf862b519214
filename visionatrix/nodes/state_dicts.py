"""Reading a model file into a state dict: safely, without copying what can be memory-mapped.

safetensors files are memory-mapped by ``safetensors``; ``.ckpt``/``.pt``/``.pth``/``.bin`` pickles are loaded
with ``torch.load(weights_only=True)`` (memory-mapped where the file is in torch's zip format), so a pickle that
needs code to load is refused instead of run. Training checkpoints that wrap their weights (``params_ema``,
``state_dict``, ...) are unwrapped, a ``module.`` prefix on every key removed, and non-tensor entries (epoch
counters, optimizer names) dropped. Every failure
is a :class:`ModelFileError` naming the file. Imports torch only when called.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from visionatrix.errors import ModelFileError

if TYPE_CHECKING:
    from torch import Tensor

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
PREFIXES = ("module.", "netG.")
"""Prefixes that wrapping training code (DataParallel, GAN trainers) puts before every key."""
WRAPPER_KEYS = ("string_to_param", "params_ema", "params-ema", "state_dict", "model_state_dict", "params", "model",
                "net")
"""Keys under which training code stores the weights (tried in this order; ``string_to_param``: A1111's textual
inversion files)."""


def read_state_dict(path: Path, prefixes: tuple[str, ...] | None = None) -> dict[str, Tensor]:
    """The tensors of the model file ``path`` on the CPU; :class:`ModelFileError` for anything else.

    ``prefixes``: only the tensors whose keys start with one of them (a safetensors file reads no others: one
    component of an all-in-one checkpoint costs only its own bytes)."""
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        loaded: Any = _read_safetensors(path, prefixes)
    elif suffix in PICKLE_SUFFIXES:
        loaded = _read_pickle(path)
    else:
        known = ", ".join(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES)
        raise ModelFileError(path, f"unsupported model format {suffix or '(no extension)'!r}; expected one of {known}")
    tensors = _tensors_of(path, loaded)
    if prefixes is not None:
        tensors = {key: value for key, value in tensors.items() if key.startswith(prefixes)}
    return tensors


def _read_safetensors(path: Path, prefixes: tuple[str, ...] | None = None) -> dict[str, Any]:
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        if prefixes is None:
            return load_file(path, device="cpu")
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys() if key.startswith(prefixes)}  # noqa: SIM118
    except OSError as exc:
        raise ModelFileError(path, f"cannot be read: {exc.strerror or exc}") from exc
    except Exception as exc:  # SafetensorError and friends: a truncated or non-safetensors file
        raise ModelFileError(path, f"not a readable safetensors file: {exc}") from exc


def _read_pickle(path: Path) -> Any:
    import torch

    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except pickle.UnpicklingError as exc:
        refused = _refused_global(exc)
        if refused is None:
            raise ModelFileError(path, f"not a readable torch checkpoint: {_first_line(str(exc))}") from exc
        raise ModelFileError(path, f"the pickle needs code to load ({refused}): refused; convert it to "
                                   "safetensors") from exc
    except OSError as exc:
        raise ModelFileError(path, f"cannot be read: {exc.strerror or exc}") from exc
    except Exception as exc:  # torch reports damaged files as RuntimeError, KeyError, EOFError, ...
        raise ModelFileError(path, f"not a readable torch checkpoint: {type(exc).__name__}: "
                                   f"{_first_line(str(exc))}") from exc


def _refused_global(exc: BaseException) -> str | None:
    """The global torch's weights-only unpickler refused (``GLOBAL builtins.print``); None when the unpickler
    failed for another reason (the bytes are not a pickle at all)."""
    found = re.search(r"Unsupported global: (GLOBAL [\w.]+)", str(exc))
    if found:
        return found.group(1)
    return "a global it may not import" if "global" in str(exc).lower() else None


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return line[:300]


def _tensors_of(path: Path, loaded: Any) -> dict[str, Tensor]:
    """Unwrap a training checkpoint to its weights; keep the tensor entries."""
    import torch

    if not isinstance(loaded, dict):
        raise ModelFileError(path, f"holds a {type(loaded).__name__}, not a dict of tensors")
    for key in WRAPPER_KEYS:
        if isinstance(loaded.get(key), dict):
            loaded = loaded[key]
            break
    else:
        if len(loaded) == 1 and isinstance(next(iter(loaded.values())), dict):
            loaded = next(iter(loaded.values()))
    tensors = {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelFileError(path, "holds no tensors")
    for prefix in PREFIXES:
        if all(key.startswith(prefix) for key in tensors):
            tensors = {key[len(prefix):]: value for key, value in tensors.items()}
    return tensors
