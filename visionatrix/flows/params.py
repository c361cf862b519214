"""Writing a run's parameters into a copy of a flow's graph, after checking every one against the manifest.

Values come in ``params`` (name -> value) and, for file parameters, in ``files`` (name -> stored file name;
``params`` may carry them too). Every problem is collected and raised at once as
:class:`~visionatrix.errors.InvalidParams`. Parameters not given keep the graph's values (the defaults). A
non-optional parameter must be given. An optional file parameter that is not given has its bound node removed
from the copy (see ``prune``). When the flow supports seeds and has no parameter called ``seed``, ``seed`` sets
every constant ``seed``/``noise_seed`` input.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

from visionatrix.errors import InvalidFlow, InvalidParams
from visionatrix.flows import prune
from visionatrix.flows.flow import Flow
from visionatrix.flows.graph import Graph, is_link
from visionatrix.flows.manifest import FlowInput

TRUE_WORDS = frozenset({"true", "1", "yes", "y", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "off"})
SEED_PARAM = "seed"
SEED_INPUTS = ("seed", "noise_seed")
SEED_MAX = 2**64 - 1


def bind_params(flow: Flow, params: Mapping[str, Any], files: Mapping[str, str] | None = None) -> Graph:
    """A new API graph with ``params`` and ``files`` written into the nodes their parameters are bound to."""
    files = files or {}
    if not isinstance(params, Mapping) or not isinstance(files, Mapping):
        raise InvalidParams({"params": "parameters and files must be given as mappings of name -> value"})
    manifest = flow.manifest
    auto_seed = manifest.is_seed_supported and manifest.input(SEED_PARAM) is None
    problems: dict[str, str] = {}
    for name in params:
        if manifest.input(name) is None and not (auto_seed and name == SEED_PARAM):
            problems[name] = "unknown parameter"
    for name in files:
        param = manifest.input(name)
        if param is None:
            problems[name] = "unknown parameter"
        elif not param.is_file:
            problems[name] = f"is a {param.type} parameter, not a file; give it as a value"
    values: dict[str, Any] = {}
    absent_files: list[FlowInput] = []
    for param in manifest.inputs:
        if param.name in problems:
            continue
        raw = files.get(param.name, params.get(param.name)) if param.is_file else params.get(param.name)
        if raw is None:
            if not param.optional:
                problems[param.name] = "required parameter is missing"
            elif param.is_file:
                absent_files.append(param)
            continue
        try:
            values[param.name] = coerce(param, raw)
        except ValueError as exc:
            problems[param.name] = str(exc)
    for param in manifest.inputs:
        source = param.source_input_name
        if param.is_file and param.name in values and source and source not in values and source not in problems:
            problems[param.name] = f"is a mask for {source!r}, which is not given"
    seed = _seed(params, problems) if auto_seed and SEED_PARAM in params else None
    if problems:
        raise InvalidParams(problems)
    graph = copy_json(flow.graph)
    for name, value in values.items():
        _write(graph, manifest.input(name), value)  # type: ignore[arg-type]
    if seed is not None:
        _write_seed(graph, seed)
    for param in absent_files:
        for binding in param.bindings:
            prune.remove_node(graph, binding.node_id, flow.node_info)
    return graph


def coerce(param: FlowInput, raw: Any) -> Any:
    """The value to write for ``param``; ``ValueError`` with a readable reason when ``raw`` does not fit."""
    if param.is_file:
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError(f"needs a file name (a non-empty string), got {raw!r}")
        return raw
    if param.type == "text":
        if isinstance(raw, str):
            return raw
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return str(raw)
        raise ValueError(f"expected text, got {type(raw).__name__}")
    if param.type == "bool":
        return _boolean(raw)
    if param.type == "list":
        return _choice(param, raw)
    return _number(param, raw)


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str):
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise ValueError(f"expected a boolean (true/false, 1/0, yes/no, on/off), got {raw!r}")


def _choice(param: FlowInput, raw: Any) -> Any:
    options = param.options or {}
    key = str(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else raw
    if not isinstance(key, str) or key not in options:
        shown = ", ".join(repr(choice) for choice in list(options)[:20])
        raise ValueError(f"{raw!r} is not one of the choices: {shown}")
    return key if param.node_maps_choice else options[key]


def _number(param: FlowInput, raw: Any) -> int | float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ValueError(f"expected a number, got {raw!r}")
    number: int | float = raw if not isinstance(raw, str) else _parse_number(raw)
    if isinstance(number, float) and not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {raw!r}")
    if param.integer:
        if isinstance(number, float) and not number.is_integer():
            raise ValueError(f"expected a whole number, got {raw!r}")
        number = int(number)
    elif isinstance(number, int) and param.type != "number":
        number = float(number)
    if param.min is not None and number < param.min:
        raise ValueError(f"{number} is below the minimum {_plain(param.min)}")
    if param.max is not None and number > param.max:
        raise ValueError(f"{number} is above the maximum {_plain(param.max)}")
    return number


def _parse_number(text: str) -> int | float:
    try:
        return int(text.strip())
    except ValueError:
        pass
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {text!r}") from None


def _plain(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def _seed(params: Mapping[str, Any], problems: dict[str, str]) -> int | None:
    raw = params[SEED_PARAM]
    try:
        number = _parse_number(raw) if isinstance(raw, str) else raw
        if isinstance(number, bool) or not isinstance(number, int | float) or not float(number).is_integer():
            raise ValueError
        if not 0 <= int(number) <= SEED_MAX:
            raise ValueError
        return int(number)
    except ValueError:
        problems[SEED_PARAM] = f"expected a whole number from 0 to {SEED_MAX}, got {raw!r}"
        return None


def _write(graph: Graph, param: FlowInput, value: Any) -> None:
    for binding in param.bindings:
        node = graph.get(binding.node_id)
        if node is None:
            raise InvalidFlow(f"parameter {param.name!r} is bound to node {binding.node_id!r}, not in the graph")
        node.setdefault("inputs", {})[binding.input] = value


def _write_seed(graph: Graph, seed: int) -> None:
    for node in graph.values():
        inputs = node.get("inputs", {})
        for name in SEED_INPUTS:
            if name in inputs and not is_link(inputs[name]):
                inputs[name] = seed


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON-shaped value (dicts, lists, scalars) — several times faster than ``copy.deepcopy``,
    which a create request pays for its flow's whole graph; anything else is deep-copied the general way."""
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    if value is None or isinstance(value, str | int | float):
        return value
    return copy.deepcopy(value)
