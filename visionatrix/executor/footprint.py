"""The memory a cached value keeps alive, without importing torch.

What counts is the memory behind a value, not its visible size: a tensor counts its whole storage (a 64 px crop of
an 8192 px image is a view that keeps the 8192 px storage alive), an array its base buffer, ``bytes`` and
``bytearray`` their length, a PIL image its pixels, a module its parameters and buffers. Lists, tuples, sets,
dicts (latents), and the attributes of other objects (``__dict__``, ``__slots__``) are walked. Each block of memory
has a key (a storage's device and address, an object's id), so a block reached twice is counted once; the output
cache adds the blocks of all its entries up the same way. Objects ``owned`` says belong to the model manager are
skipped with everything behind them. The walk visits at most ``MAX_VISITS`` objects per value.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

Owned = Callable[[object], bool]
Blocks = dict[Any, int]
MAX_VISITS = 200_000
_ATOMS = (str, int, float, bool, complex, type(None), type, types.ModuleType, types.FunctionType, types.MethodType,
          types.BuiltinFunctionType)


def never_owned(value: object) -> bool:
    return False


def memory_blocks(value: Any, owned: Owned = never_owned) -> Blocks:
    """``{block key: bytes}`` of the memory ``value`` keeps alive (see the module's docstring)."""
    blocks: Blocks = {}
    seen: set[int] = set()
    stack = [value]
    visits = 0
    while stack and visits < MAX_VISITS:
        item = stack.pop()
        if isinstance(item, _ATOMS) or id(item) in seen:
            continue
        seen.add(id(item))
        visits += 1
        if owned(item):
            continue
        if isinstance(item, bytes | bytearray | memoryview):
            blocks[("bytes", id(item))] = item.nbytes if isinstance(item, memoryview) else len(item)
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif callable(getattr(item, "untyped_storage", None)):
            _tensor(item, blocks)
        elif isinstance(getattr(item, "nbytes", None), int) and hasattr(item, "base"):
            _array(item, blocks)
        elif callable(getattr(item, "parameters", None)) and callable(getattr(item, "buffers", None)):
            stack.extend(item.parameters())
            stack.extend(item.buffers())
        elif callable(getattr(item, "getbands", None)) and isinstance(getattr(item, "size", None), tuple):
            _pil_image(item, blocks)
        else:
            stack.extend(_attributes(item))
    return blocks


def estimate_bytes(value: Any, owned: Owned = never_owned) -> int:
    """Bytes of memory ``value`` keeps alive, each block counted once."""
    return sum(memory_blocks(value, owned).values())


def compact(value: Any) -> Any:
    """``value``, or a copy of it when it is a tensor view using less than half of the storage it keeps alive (a
    crop, a channel, one image of a batch): the cache then keeps only the pixels it needs."""
    if not callable(getattr(value, "untyped_storage", None)):
        return value
    try:
        visible = int(value.element_size()) * int(value.nelement())
        if 0 < visible * 2 < int(value.untyped_storage().nbytes()):
            return value.clone()
    except (RuntimeError, NotImplementedError):
        pass
    return value


def _tensor(tensor: Any, blocks: Blocks) -> None:
    try:
        storage = tensor.untyped_storage()
        blocks[("storage", str(storage.device), storage.data_ptr())] = int(storage.nbytes())
    except (RuntimeError, NotImplementedError):  # a tensor without storage (sparse, meta...): its own elements
        blocks[("tensor", id(tensor))] = int(tensor.element_size()) * int(tensor.nelement())


def _array(array: Any, blocks: Blocks) -> None:
    root = array
    while getattr(root, "base", None) is not None and isinstance(getattr(root.base, "nbytes", None), int):
        root = root.base
    blocks[("array", id(root))] = int(root.nbytes)


def _pil_image(image: Any, blocks: Blocks) -> None:
    width, height = image.size
    bytes_per_band = 4 if getattr(image, "mode", "") in ("I", "F", "I;32") else 1
    blocks[("pil", id(image))] = int(width) * int(height) * len(image.getbands()) * bytes_per_band


def _attributes(item: Any) -> list[Any]:
    values = list(getattr(item, "__dict__", {}).values()) if hasattr(item, "__dict__") else []
    for cls in type(item).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if isinstance(name, str) and name not in ("__dict__", "__weakref__") and hasattr(item, name):
                values.append(getattr(item, name))
    return values
