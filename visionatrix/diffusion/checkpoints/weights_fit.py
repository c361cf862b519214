"""Loading converted weights into a module strictly: every missing, unexpected or misshapen weight is reported."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from visionatrix.errors import ModelFileError

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module


def load_strictly(model: Module, weights: Mapping[str, Tensor], path: object, what: str, *,
                  assign: bool = False) -> None:
    """Load ``weights`` into ``model``; every missing or unexpected key or wrong shape is a :class:`ModelFileError`.

    ``assign``: the module was built on the ``meta`` device (no random initialisation of weights that are replaced
    anyway) and takes the tensors themselves, in their stored dtype; a tensor left on ``meta`` is an error."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    shared = set(expected) & set(weights)
    wrong = sorted(key for key in shared if tuple(expected[key].shape) != tuple(weights[key].shape))
    problems = [f"{label} {len(keys)} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
    if problems:
        raise ModelFileError(path, f"{what} weights do not fit: " + "; ".join(problems))
    model.load_state_dict(dict(weights), strict=True, assign=assign)
    if assign:
        left = [name for name, tensor in (*model.named_parameters(), *model.named_buffers()) if tensor.is_meta]
        if left:
            raise ModelFileError(path, f"{what} weights do not fit: not loaded {', '.join(left[:3])}")
