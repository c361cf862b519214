"""Validate a prompt before anything runs, collecting EVERY problem in ComfyUI's ``node_errors`` shape.

Checks (comfyui_api.md §6.1): unknown class types, no output node, missing required inputs, links to missing
nodes or output slots, linked type mismatches, constants of the wrong type, out of min/max or not in a COMBO
list, custom ``VALIDATE_INPUTS`` failures and dependency cycles. Constants are coerced to their widget types in
the validated copy of the prompt. Imports no torch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from visionatrix.errors import InvalidGraph, InvalidInput
from visionatrix.executor import types as vt
from visionatrix.executor.graph import Graph, Node, is_link, parse_prompt, post_order, unwrap
from visionatrix.nodes import pixels
from visionatrix.nodes.context import current as current_context
from visionatrix.nodes.describe import has_live_inputs, input_types, node_input_types
from visionatrix.nodes.registry import NodeRegistry


def error(kind: str, message: str, details: str = "", **extra_info: Any) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra_info}


@dataclass
class Validated:
    """The outcome: the coerced graph, the outputs that can run, and every problem found."""

    graph: Graph
    outputs: list[str]
    node_errors: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.node_errors

    def raise_for_errors(self) -> None:
        if not self.ok:
            raise InvalidGraph(self.error or _failed_outputs(self.node_errors), self.node_errors)


def _failed_outputs(node_errors: dict[str, Any]) -> dict[str, Any]:
    lines = [f"{e['message']}: {e['details']}" for entry in node_errors.values() for e in entry["errors"]]
    return error("prompt_outputs_failed_validation", "Prompt outputs failed validation", "\n".join(lines))


@dataclass
class _ValidateInputsHook:
    method: Any
    params: set[str]
    takes_all: bool
    wants_types: bool

    @classmethod
    def of(cls, node_class: type) -> _ValidateInputsHook | None:
        method = getattr(node_class, "VALIDATE_INPUTS", None)
        if method is None:
            return None
        sig = inspect.signature(method)
        takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
        params = {n for n, p in sig.parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD}
        return cls(method, params - {"self", "cls"}, takes_all, "input_types" in params)

    def skips_value_checks(self, name: str) -> bool:
        return self.takes_all or name in self.params


class _Validator:
    def __init__(self, graph: Graph, registry: NodeRegistry) -> None:
        self.graph = graph
        self.registry = registry
        self.node_errors: dict[str, list[dict[str, Any]]] = {}
        self.results: dict[str, bool] = {}
        self.specs: dict[str, dict[str, dict[str, Any]]] = {}

    def add(self, node_id: str, err: dict[str, Any]) -> None:
        self.node_errors.setdefault(node_id, []).append(err)

    def validate_all(self, outputs: list[str]) -> None:
        """Check every node upstream of ``outputs``, dependencies first; fills ``results``."""
        walk = post_order(self.graph, outputs)
        in_cycle: set[str] = set()
        for cycle in walk.cycles:
            in_cycle.update(cycle)
            self.add(cycle[0], error("dependency_cycle", "Dependency cycle detected", " -> ".join(cycle),
                                     cycle_nodes=cycle))
        for node_id in walk.order:
            node = self.graph.node(node_id)
            if node.class_type not in self.registry:
                self.results[node_id] = False
                continue
            own_ok = self._validate_node(node)
            upstream_ok = all(self.results.get(link.source, False) for link in node.links.values()
                              if link.source in self.graph)
            self.results[node_id] = (own_ok and upstream_ok and node_id not in in_cycle
                                     and node_id not in self.node_errors)

    def _validate_node(self, node: Node) -> bool:
        node_class = self.registry.node_class(node.class_type)
        try:
            if has_live_inputs(node_class):  # V3 dynamic inputs: this node's own
                spec = node_input_types(node_class, node.inputs)
            else:
                if node.class_type not in self.specs:
                    self.specs[node.class_type] = input_types(node_class)
                spec = self.specs[node.class_type]
        except Exception as exc:
            self.add(node.id, error("exception_during_validation", "INPUT_TYPES failed", str(exc)))
            return False
        hook = _ValidateInputsHook.of(node_class)
        ok = True
        for name in spec["required"]:
            if name not in node.inputs:
                self.add(node.id, error("required_input_missing", "Required input is missing", name,
                                        input_name=name))
        received_types: dict[str, str] = {}
        for name, value in node.inputs.items():
            input_spec = spec["required"].get(name) or spec["optional"].get(name)
            if input_spec is None:
                continue
            if is_link(value):
                ok = self._check_link(node, name, input_spec, hook, received_types) and ok
            elif not (hook and hook.skips_value_checks(name)):
                self._check_constant(node, name, input_spec)
        self._check_pixels(node, node_class)
        if hook is not None:
            self._run_hook(node, hook, received_types)
        return ok

    def _check_pixels(self, node: Node, node_class: type) -> None:
        """The pixel limit on ``PIXEL_INPUTS`` given as constants (linked ones are checked at run time)."""
        names = pixels.declared_inputs(node_class)
        if names is None or any(n in node.links for n in names if n):
            return
        try:
            pixels.check_declared(names, {n: node.inputs.get(n) for n in names if n},
                                  limit=current_context().max_image_pixels)
        except InvalidInput as exc:
            self.add(node.id, error("image_too_large", "Image larger than the pixel limit", str(exc),
                                    input_name=exc.input_name, received_value=node.inputs.get(exc.input_name)))

    def _check_link(self, node: Node, name: str, input_spec: Any, hook: _ValidateInputsHook | None,
                    received_types: dict[str, str]) -> bool:
        link = node.links[name]
        if link.source not in self.graph:
            self.add(node.id, error("bad_linked_input", "Bad linked input",
                                    f"{name} links to node {link.source}, which does not exist",
                                    input_name=name, received_value=node.inputs[name]))
            return False
        source = self.graph.node(link.source)
        if source.class_type not in self.registry:
            return False
        outputs = list(getattr(self.registry.node_class(source.class_type), "RETURN_TYPES", ()))
        if not 0 <= link.slot < len(outputs):
            self.add(node.id, error("bad_linked_input", "Bad linked input",
                                    f"{name} links to output {link.slot} of node {source.id} ({source.class_type}),"
                                    f" which has {len(outputs)} output(s)", input_name=name,
                                    received_value=node.inputs[name]))
            return False
        received = outputs[link.slot]
        received_types[name] = vt.type_name(received)
        if not (hook and hook.wants_types) and not vt.types_compatible(received, input_spec[0]):
            self.add(node.id, error("return_type_mismatch", "Return type mismatch between linked nodes",
                                    f"{name}, received_type({vt.type_name(received)}) mismatch input_type"
                                    f"({vt.type_name(input_spec[0])})", input_name=name,
                                    input_config=_config(input_spec), received_type=vt.type_name(received),
                                    linked_node=[source.id, link.slot]))
            return False
        return True

    def _check_constant(self, node: Node, name: str, input_spec: Any) -> None:
        spec_type = input_spec[0]
        options = input_spec[1] if len(input_spec) > 1 and isinstance(input_spec[1], dict) else {}
        value = received = unwrap(node.inputs[name])

        def extra() -> dict[str, Any]:  # built only for an error: most constants are fine
            return {"input_name": name, "input_config": _config(input_spec), "received_value": received}

        if isinstance(spec_type, list | tuple) or spec_type == "COMBO":
            self._check_combo(node, name, spec_type, options, value, extra)
            return
        if spec_type not in vt.WIDGET_TYPES and spec_type != vt.ANY:
            self.add(node.id, error("invalid_input_type", f"Input of type {spec_type} must be linked",
                                    f"{name}: a {spec_type} comes from another node's output, not a constant",
                                    **extra()))
            return
        try:
            value = vt.coerce(spec_type, value)
        except vt.CoercionError as exc:
            self.add(node.id, error("invalid_input_type", f"Failed to convert an input value to a {spec_type} value",
                                    f"{name}, {value!r}, {exc}", **extra()))
            return
        node.inputs[name] = value
        if spec_type in ("INT", "FLOAT"):
            if options.get("min") is not None and value < options["min"]:
                self.add(node.id, error("value_smaller_than_min", f"Value {value} smaller than min of "
                                        f"{options['min']}", f"{name}", **extra()))
            if options.get("max") is not None and value > options["max"]:
                self.add(node.id, error("value_bigger_than_max", f"Value {value} bigger than max of "
                                        f"{options['max']}", f"{name}", **extra()))

    def _check_combo(self, node: Node, name: str, spec_type: Any, options: dict[str, Any], value: Any,
                     extra: Callable[[], dict[str, Any]]) -> None:
        if options.get("remote"):
            return
        if getattr(spec_type, "folder", None) is not None and not current_context().check_model_files:
            if not isinstance(value, str) or not value:
                self.add(node.id, error("value_not_in_list", "Value not in list",
                                        f"{name}: expected a model file name, got {value!r}", **extra()))
            return  # a model file: the worker that runs the graph checks its own folders
        choices = list(spec_type) if isinstance(spec_type, list | tuple) else list(options.get("options", []))
        values = value if (options.get("multi_select") or options.get("multiselect")) and isinstance(
            value, list) else [value]
        bad = [v for v in values if v not in choices]
        if bad:
            fields = extra()
            if len(choices) > 20:
                fields["input_config"] = None
            shown = ", ".join(map(repr, choices[:20])) + (" ..." if len(choices) > 20 else "")
            self.add(node.id, error("value_not_in_list", "Value not in list",
                                    f"{name}: {bad[0]!r} not in [{shown}]", **fields))

    def _run_hook(self, node: Node, hook: _ValidateInputsHook, received_types: dict[str, str]) -> None:
        names = set(node.inputs) if hook.takes_all else hook.params - {"input_types"}
        kwargs = {n: (None if n in node.links else unwrap(node.inputs[n])) for n in names if n in node.inputs}
        if hook.wants_types:
            kwargs["input_types"] = received_types
        try:
            result = hook.method(**kwargs)
        except Exception as exc:
            result = f"{type(exc).__name__}: {exc}"
        if result is not True:
            details = "" if result is False else str(result)
            self.add(node.id, error("custom_validation_failed", "Custom validation failed for node",
                                    details, input_name=_first_named_input(details, node)))


def _first_named_input(details: str, node: Node) -> str | None:
    return next((name for name in node.inputs if name in details), None)


def _config(input_spec: Any) -> list[Any]:
    return [vt.type_name(input_spec[0]) if isinstance(input_spec[0], list | tuple) else input_spec[0],
            input_spec[1] if len(input_spec) > 1 else {}]


def validate(prompt: Any, registry: NodeRegistry, *, targets: list[str] | None = None) -> Validated:
    """Validate ``prompt`` (dict or JSON text) against ``registry``; the input prompt is never modified."""
    graph = parse_prompt(prompt)  # nodes get their own input dicts; coercion never touches ``prompt``
    checker = _Validator(graph, registry)
    missing = [n for n in graph if n.class_type not in registry]
    for node in missing:
        checker.add(node.id, error("missing_node_type", f"Node '{node.title or node.id}' not found. "
                                   f"The custom node may not be installed.", node.class_type,
                                   node_id=node.id, class_type=node.class_type, node_title=node.title))
    outputs = [n.id for n in graph if n.class_type in registry
               and getattr(registry.node_class(n.class_type), "OUTPUT_NODE", False) is True]
    top: dict[str, Any] | None = None
    if targets is not None:
        unknown = [t for t in targets if t not in graph]
        if unknown:
            top = error("invalid_targets", "Requested output nodes do not exist", ", ".join(unknown))
        outputs = [o for o in outputs if o in targets]
    if not outputs and top is None:
        top = error("prompt_no_outputs", "Prompt has no outputs", "the graph has no output node to execute")
    checker.validate_all(outputs)
    valid = [o for o in outputs if checker.results.get(o)]
    node_errors = _shape(graph, checker.node_errors, outputs)
    if top is None and missing:
        first = missing[0]
        top = error("missing_node_type", f"Node '{first.title or first.id}' not found. The custom node may not be "
                    f"installed.", first.class_type, node_id=first.id, class_type=first.class_type,
                    node_title=first.title)
    if top is None and node_errors:
        top = _failed_outputs(node_errors)
    return Validated(graph, valid, node_errors, top)


def _shape(graph: Graph, errors: dict[str, list[dict[str, Any]]], outputs: list[str]) -> dict[str, Any]:
    shaped = {}
    for node_id, errs in errors.items():
        dependents = [o for o in outputs if node_id in graph.ancestors([o])]
        shaped[node_id] = {"errors": errs, "dependent_outputs": dependents,
                           "class_type": graph.node(node_id).class_type}
    return shaped
