"""Run-time checks of linked values, before a node runs. Imports no torch.

Validation checks constants against an input's ``min``/``max`` and the pixel limit; a value that reaches an INT or
FLOAT input through a link (a primitive, a math expression, an image size) is only known at run time. Before a
node's function is called, every linked number is checked against the receiving input's ``min``/``max`` and, for
nodes that declare ``PIXEL_INPUTS`` (:mod:`visionatrix.nodes.pixels`), each mapped call's ``batch * width *
height`` against the pixel limit. A refusal is an :class:`InvalidInput` naming the input, which the scheduler turns
into the node's failure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from visionatrix.errors import InvalidInput
from visionatrix.executor.graph import Node
from visionatrix.nodes import pixels

Bounds = dict[str, tuple[float | None, float | None]]
NUMBER_TYPES = ("INT", "FLOAT")


def bounds_of(spec: Mapping[str, Mapping[str, Any]]) -> Bounds:
    """``{input: (min, max)}`` of the INT and FLOAT inputs of an ``input_types`` spec that set either."""
    bounds: Bounds = {}
    for section in ("required", "optional"):
        for name, input_spec in spec.get(section, {}).items():
            if not isinstance(input_spec, tuple | list) or not input_spec or input_spec[0] not in NUMBER_TYPES:
                continue
            options = input_spec[1] if len(input_spec) > 1 and isinstance(input_spec[1], dict) else {}
            low, high = options.get("min"), options.get("max")
            if low is not None or high is not None:
                bounds[name] = (low, high)
    return bounds


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_linked(node: Node, bounds: Bounds, pixel_inputs: tuple[str, str, str | None] | None,
                 inputs: Mapping[str, list[Any]], max_image_pixels: int) -> None:
    """Raise :class:`InvalidInput` for the first linked number of ``node`` outside its input's bounds, or a mapped
    call whose declared pixel inputs exceed ``max_image_pixels``; ``inputs`` are the lists the node is called
    with."""
    for name, link in node.links.items():
        if name not in bounds:
            continue
        low, high = bounds[name]
        for value in inputs.get(name, ()):
            if not _is_number(value):
                continue
            source = f"linked value {value!r} from node {link.source}"
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidInput(name, f"{source} is not a finite number")
            if low is not None and value < low:
                raise InvalidInput(name, f"{source} is smaller than the min of {low}")
            if high is not None and value > high:
                raise InvalidInput(name, f"{source} is bigger than the max of {high}")
    if pixel_inputs is None or not any(n in node.links for n in pixel_inputs if n):
        return
    lists = {n: inputs[n] for n in pixel_inputs if n and inputs.get(n)}
    for index in range(max((len(v) for v in lists.values()), default=0)):
        values = {n: v[min(index, len(v) - 1)] for n, v in lists.items()}
        pixels.check_declared(pixel_inputs, values, limit=max_image_pixels)
