"""V3 dynamic inputs in a graph: the inputs an ``Autogrow``, ``DynamicCombo`` or ``MatchType`` input stands for in
one node, and the nested values its ``execute`` receives. Imports no torch.

In API format a dynamic input's inputs are named by their path, joined with dots (ComfyUI's format): an Autogrow
``images`` with the prefix ``image`` has ``images.image0``, ``images.image1``, ...; a DynamicCombo ``mode`` has its
chosen key under ``mode`` and the chosen option's inputs under ``mode.<input id>``. :func:`expand` turns a node's
values into flat ``INPUT_TYPES``-shaped sections that validation and the executor use like any node's (an Autogrow
slot has its template's type, required for the first ``min``; a DynamicCombo's key is a COMBO of its option keys; a
MatchType input accepts its template's allowed types); :func:`nest` turns the flat values back into what
``execute`` takes: ``images={"image0": ..., "image1": ...}`` (``{}`` when none is given), ``mode={"mode": key,
<input id>: ...}``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from visionatrix.nodes.v3 import io


@dataclass
class Expanded:
    """A V3 node's inputs for the values one graph node gives."""

    spec: dict[str, dict[str, Any]] = field(default_factory=lambda: {"required": {}, "optional": {}})
    paths: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """Flat input name -> where its value goes in ``execute``'s arguments."""
    empty: list[tuple[str, ...]] = field(default_factory=list)
    """Autogrow inputs given no value: ``execute`` gets ``{}`` there."""


def is_dynamic(inputs: list[io.InputSpec]) -> bool:
    """Whether a schema has inputs whose names or types depend on the node's values."""
    return any(isinstance(item, io.DynamicInputSpec | io.MatchType.Input) for item in inputs)


def expand(inputs: list[io.InputSpec], values: Mapping[str, Any]) -> Expanded:
    out = Expanded()
    _walk(inputs, (), values, out, optional=False)
    return out


def _walk(inputs: list[io.InputSpec], prefix: tuple[str, ...], values: Mapping[str, Any], out: Expanded,
          optional: bool) -> None:
    for item in inputs:
        path = (*prefix, item.id)
        name = ".".join(path)
        section = "optional" if optional or item.optional else "required"
        if isinstance(item, io.Autogrow.Input):
            _autogrow(item, path, values, out, section == "optional")
        elif isinstance(item, io.DynamicCombo.Input):
            keys = [option.key for option in item.choices]
            options = {k: v for k, v in item.v1_options().items() if k != "options"}
            out.spec[section][name] = (keys, options)
            chosen = next((o for o in item.choices if o.key == values.get(name)), None)
            if chosen is not None:
                out.paths[name] = (*path, item.id)
                _walk(chosen.inputs, path, values, out, section == "optional")
        else:
            out.spec[section][name] = _flat(item)
            if prefix:
                out.paths[name] = path


def _autogrow(item: io.Autogrow.Input, path: tuple[str, ...], values: Mapping[str, Any], out: Expanded,
              optional: bool) -> None:
    template = item.template
    given = False
    for index, slot in enumerate(template.names):
        name = ".".join((*path, slot))
        required = index < template.min and not (optional or template.input.optional)
        out.spec["required" if required else "optional"][name] = _flat(template.input)
        if name in values:
            out.paths[name] = (*path, slot)
            given = True
    if not given:
        out.empty.append(path)


def _flat(item: io.InputSpec) -> tuple[Any, dict[str, Any]]:
    """The V1 entry of a plain input; a MatchType input takes any of its template's allowed types."""
    v1_type, options = item.as_v1()
    if isinstance(item, io.MatchType.Input):
        v1_type = item.template.allowed
        options = {k: v for k, v in options.items() if k != "template"}
    return (v1_type, copy.copy(options))


def nest(values: dict[str, Any], expanded: Expanded) -> dict[str, Any]:
    """``execute``'s arguments from the flat ``values`` of a node."""
    result = {k: v for k, v in values.items() if k not in expanded.paths}
    for path in expanded.empty:
        _place(result, path, {})
    for name, path in expanded.paths.items():
        if name in values:
            _place(result, path, values[name])
    return result


def _place(result: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    current = result
    for part in path[:-1]:
        below = current.get(part)
        if not isinstance(below, dict):
            below = current[part] = {}
        current = below
    current[path[-1]] = value
