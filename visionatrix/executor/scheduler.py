"""Runs one validated prompt, synchronously, in the device thread.

Only what the output nodes need runs, dependencies first. A node whose signature is in the output cache is taken
from it without pulling its inputs. Lazy inputs are left out of the first walk; ``check_lazy_status`` names the
ones to evaluate, and the node is revisited until it needs nothing more. Interrupts are checked before every node
and every mapped call, and inside nodes through their progress reports.
"""

from __future__ import annotations

import dataclasses
import math
import time
import traceback
from collections.abc import Callable
from typing import Any

from visionatrix.errors import Interrupted, NodeFailed
from visionatrix.executor import calls, events, expansion, limits
from visionatrix.executor.cache import CacheEntry, OutputCache, compute_signatures
from visionatrix.executor.graph import Graph, Node, unwrap
from visionatrix.executor.validation import Validated
from visionatrix.nodes import pixels
from visionatrix.nodes.context import NodeContext, use
from visionatrix.nodes.describe import has_live_inputs, input_types, node_input_types
from visionatrix.nodes.registry import NodeRegistry
from visionatrix.nodes.v3 import graph_utils

Emit = Callable[[events.Event], None]
_HIDDEN_SOURCES = ("PROMPT", "EXTRA_PNGINFO", "UNIQUE_ID")


class _NodeSpec:
    """Per-class facts read once per run (per node for a class whose inputs follow the node's values, V3 dynamic
    inputs): lazy input names and hidden inputs."""

    def __init__(self, node_class: type, inputs: dict[str, Any] | None = None) -> None:
        spec = input_types(node_class) if inputs is None else node_input_types(node_class, inputs)
        declared = {**spec["required"], **spec["optional"]}
        self.declared = set(declared)
        self.lazy = {n for n, s in declared.items() if len(s) > 1 and isinstance(s[1], dict) and s[1].get("lazy")}
        self.hidden = dict(spec["hidden"])
        self.output_node = getattr(node_class, "OUTPUT_NODE", False) is True
        self.bounds = limits.bounds_of(spec)
        self.pixel_inputs = pixels.declared_inputs(node_class)


class Run:
    """One execution of a validated prompt."""

    def __init__(self, *, registry: NodeRegistry, validated: Validated, cache: OutputCache,
                 objects: dict[tuple[str, str], Any], ctx: NodeContext, prompt_id: str,
                 extra_data: dict[str, Any], emit: Emit) -> None:
        self.registry = registry
        self.graph: Graph = validated.graph.copy()  # node expansion adds nodes to this run's copy only
        self.outputs = validated.outputs
        self.cache = cache
        self.objects = objects
        self.ctx = ctx
        self.prompt_id = prompt_id
        self.extra_data = extra_data
        self.emit = emit
        self.values: dict[str, list[list[Any]]] = {}
        self.specs: dict[str, _NodeSpec] = {}
        self.result = events.ExecutionResult(prompt_id)
        self.expanding: dict[str, tuple[expansion.Expansion, float]] = {}
        """Expanded nodes waiting for their subgraphs, with the time each started."""
        self.parents: dict[str, str] = self.result.parents
        """Subgraph node id -> the node that expanded into it."""
        self.display_links: dict[str, str] = {}
        """Subgraph node id -> the node it shows as (the expanding node, or its ``override_display_id``)."""

    def spec(self, node: Node) -> _NodeSpec:
        node_class = self.registry.node_class(node.class_type)
        if has_live_inputs(node_class):
            key = f"{node.class_type}\n{node.id}"
            if key not in self.specs:
                self.specs[key] = _NodeSpec(node_class, node.inputs)
            return self.specs[key]
        if node.class_type not in self.specs:
            self.specs[node.class_type] = _NodeSpec(node_class)
        return self.specs[node.class_type]

    def execute(self) -> events.ExecutionResult:
        started = time.perf_counter()
        needed = self.graph.ancestors(self.outputs)
        self.signatures = compute_signatures(self.graph, self.registry, needed, self._fingerprints(needed))
        self.planned_ids: set[str] = set()
        cached = self._plan(list(self.outputs))
        self.planned = len(self.planned_ids)
        self.emit(events.ExecutionStarted(self.prompt_id, self.planned))
        if cached:
            self.emit(events.NodesCached(self.prompt_id, sorted(cached)))
        self._run_all()
        self.result.elapsed_s = time.perf_counter() - started
        self.result.outputs = {o: self.values[o] for o in self.outputs if o in self.values}
        self.emit(events.ExecutionFinished(self.prompt_id, self.result.elapsed_s))
        return self.result

    def _fingerprints(self, node_ids: set[str]) -> dict[str, Any]:
        prints: dict[str, Any] = {}
        for node_id in node_ids:
            node = self.graph.node(node_id)
            method = getattr(self.registry.node_class(node.class_type), "IS_CHANGED", None)
            if method is None:
                continue
            constants = {n: (None if n in node.links else unwrap(v)) for n, v in node.inputs.items()}
            try:
                with use(self.ctx):
                    prints[node_id] = method(**constants)
            except Exception:
                prints[node_id] = math.nan
        return prints

    def _plan(self, roots: list[str]) -> set[str]:
        """Add the nodes that will run from ``roots`` (non-lazy walk, stopping at cache hits) to
        ``planned_ids``; returns the nodes the walk found in the cache."""
        cached: set[str] = set()
        stack = list(roots)
        while stack:
            node_id = stack.pop()
            if node_id in self.planned_ids or node_id in cached or node_id in self.values:
                continue
            node = self.graph.node(node_id)
            if not self.spec(node).output_node and self.signatures[node_id] in self.cache:
                cached.add(node_id)
                continue
            self.planned_ids.add(node_id)
            lazy = self.spec(node).lazy
            stack.extend(link.source for name, link in node.links.items() if name not in lazy)
        return cached

    def _run_all(self) -> None:
        requested: dict[str, set[str]] = {}
        looked_up: set[str] = set()
        stack = list(reversed(self.outputs))
        while stack:
            node_id = stack[-1]
            if node_id in self.values or (node_id not in looked_up and self._from_cache(node_id)):
                stack.pop()
                continue
            if node_id in self.expanding:
                missing = [s for s in self.expanding[node_id][0].sources() if s not in self.values]
                if missing:
                    stack.extend(dict.fromkeys(missing))
                else:
                    self._finish_expansion(self.graph.node(node_id))
                    stack.pop()
                continue
            looked_up.add(node_id)
            node = self.graph.node(node_id)
            lazy = self.spec(node).lazy
            wanted = requested.setdefault(node_id, set())
            missing = [link.source for name, link in node.links.items()
                       if (name not in lazy or name in wanted) and link.source not in self.values]
            if missing:
                # validation rejected cycles, so re-pushing a node already lower on the stack always terminates
                stack.extend(dict.fromkeys(missing))
                continue
            if lazy & set(node.links) and self._request_lazy(node, lazy, wanted):
                continue
            subgraph_roots = self._run_node(node)
            if subgraph_roots is None:
                stack.pop()
            else:  # the node expanded: it stays on the stack until its subgraph has run
                stack.extend(dict.fromkeys(subgraph_roots))

    def _from_cache(self, node_id: str) -> bool:
        if self.spec(self.graph.node(node_id)).output_node:
            return False  # output nodes always run: each run writes its own files
        entry = self.cache.get(self.signatures[node_id])
        if entry is None:
            return False
        self.values[node_id] = entry.outputs
        self.result.cached.append(node_id)
        if entry.ui is not None:
            self.result.ui[node_id] = entry.ui
        return True

    def _request_lazy(self, node: Node, lazy: set[str], wanted: set[str]) -> bool:
        """Ask the node which lazy inputs it needs; True when new ones were added to ``wanted``."""
        instance = self._instance(node)
        inputs = self._inputs(node, lazy, wanted)
        try:
            with use(self._node_ctx(node)):
                needed = calls.lazy_requests(type(instance), instance, inputs, self._hidden(node),
                                             self.ctx.check_interrupt)
        except Interrupted:
            raise
        except Exception as exc:
            raise self._failure(node, exc) from exc
        new = {n for n in needed if n in lazy and n in node.links and n not in wanted}
        wanted.update(new)
        if new:
            self._plan([node.links[n].source for n in new])
            self.planned = max(self.planned, len(self.planned_ids))
        return bool(new)

    def _inputs(self, node: Node, lazy: set[str], wanted: set[str]) -> dict[str, list[Any]]:
        inputs: dict[str, list[Any]] = {}
        declared = self.spec(node).declared
        for name, value in node.inputs.items():
            if name not in declared:
                continue  # like ComfyUI, inputs the node does not declare are not passed
            link = node.links.get(name)
            if link is None:
                inputs[name] = [unwrap(value)]
            elif link.source in self.values and (name not in lazy or name in wanted):
                inputs[name] = self.values[link.source][link.slot]
            else:
                inputs[name] = [None]
        return inputs

    def _hidden(self, node: Node) -> dict[str, Any]:
        sources = {"PROMPT": self.graph.prompt, "EXTRA_PNGINFO": self.extra_data.get("extra_pnginfo"),
                   "UNIQUE_ID": node.id}
        return {name: sources.get(kind) for name, kind in self.spec(node).hidden.items()}

    def _instance(self, node: Node) -> Any:
        key = (node.id, node.class_type)
        if key not in self.objects:
            self.objects[key] = self.registry.node_class(node.class_type)()
        return self.objects[key]

    def display_of(self, node_id: str) -> str:
        """The submitted graph's node that ``node_id`` shows as (itself unless expansion made it)."""
        return expansion.shown_as(node_id, self.display_links)

    def _node_ctx(self, node: Node) -> NodeContext:
        shown = self.display_of(node.id)

        def progress(value: float, total: float, preview: Any = None) -> None:
            self.emit(events.NodeProgressed(self.prompt_id, node.id, float(value), float(total), preview, shown))

        return dataclasses.replace(self.ctx, node_id=node.id, on_progress=progress)

    def _run_node(self, node: Node) -> list[str] | None:
        """Run one node; when it expands, returns the subgraph nodes to run before its outputs resolve."""
        self.ctx.check_interrupt()
        index = len(self.result.executed) + 1
        self.planned = max(self.planned, index)
        self.emit(events.NodeStarted(self.prompt_id, node.id, node.class_type, index, self.planned,
                                     self.display_of(node.id)))
        started = time.perf_counter()
        instance = self._instance(node)
        node_class = type(instance)
        spec = self.spec(node)
        inputs = self._inputs(node, spec.lazy, set(node.inputs))
        function = getattr(instance, getattr(node_class, "FUNCTION", ""), None)
        try:
            limits.check_linked(node, spec.bounds, spec.pixel_inputs, inputs, self.ctx.max_image_pixels)
            if function is None:
                raise AttributeError(f"{node_class.__name__} has no FUNCTION method")
            with use(self._node_ctx(node)), graph_utils.prefix_scope(node.id):
                results = calls.mapped_calls(node_class, inputs, self._hidden(node), self.ctx.check_interrupt,
                                             function)
            if any(expansion.is_expansion(r) for r in results):
                return self._expand(node, results, started)
            outputs, ui = calls.merge_results(node_class, results)
        except Interrupted:
            raise
        except Exception as exc:
            raise self._failure(node, exc) from exc
        self._finish_node(node, outputs, ui, started)
        return None

    def _finish_node(self, node: Node, outputs: list[list[Any]], ui: dict[str, Any] | None,
                     started: float) -> None:
        elapsed = time.perf_counter() - started
        self.values[node.id] = outputs
        if not self.spec(node).output_node:
            self.cache.put(self.signatures[node.id], CacheEntry(outputs, ui))
        self.result.executed.append(node.id)
        self.result.timings_s[node.id] = elapsed
        if ui is not None:
            self.result.ui[node.id] = ui
        self.emit(events.NodeFinished(self.prompt_id, node.id, node.class_type, elapsed, ui, self.display_of(node.id)))

    def _failure(self, node: Node, exc: Exception) -> NodeFailed:
        """``NodeFailed`` for ``node``; a failure inside a subgraph is reported against the graph's own node that
        expanded into it, naming the subgraph node."""
        top = node
        while top.id in self.parents:
            top = self.graph.node(self.parents[top.id])
        failure = NodeFailed(top.id, top.class_type, exc)
        if top is not node:
            failure.args = (f"node {top.id} ({top.class_type}) failed in its expansion, at node {node.id} "
                            f"({node.class_type}): {type(exc).__name__}: {exc}",)
            failure.subgraph_node_id = node.id  # type: ignore[attr-defined]
        failure.traceback = traceback.format_exc()  # type: ignore[attr-defined]
        return failure

    def _expand(self, node: Node, results: list[Any], started: float) -> list[str]:
        """Add the subgraphs of ``node``'s results to the graph (see :mod:`visionatrix.executor.expansion`)."""
        if expansion.depth(node.id, self.parents) >= expansion.MAX_DEPTH:
            raise expansion.BadExpansion(f"node expansions nested deeper than {expansion.MAX_DEPTH}")
        found = expansion.expand(
            node, results, self.graph, ready=lambda node_id: node_id in self.values,
            output_count=lambda class_type: len(getattr(self.registry.node_class(class_type), "RETURN_TYPES", ())),
            known_type=lambda class_type: class_type in self.registry)
        found.output_nodes = [n.id for n in found.nodes if self.spec(n).output_node]
        for sub in found.nodes:
            self.graph.add(sub)
            self.parents[sub.id] = node.id
            self.display_links[sub.id] = found.display.get(sub.id, node.id)
            self.result.display[sub.id] = self.display_of(sub.id)
        new = {sub.id for sub in found.nodes}
        self.signatures.update(compute_signatures(self.graph, self.registry, new, self._fingerprints(new),
                                                  known=self.signatures))
        self.expanding[node.id] = (found, started)
        roots = found.sources()
        self._plan(roots)
        self.planned = max(self.planned, len(self.planned_ids))
        return roots

    def _finish_expansion(self, node: Node) -> None:
        """The expanded ``node``'s outputs, now that its subgraph has run."""
        found, started = self.expanding.pop(node.id)
        try:
            outputs, ui = calls.merge_results(self.registry.node_class(node.class_type), found.resolve(self.values))
        except Exception as exc:
            raise self._failure(node, exc) from exc
        self._finish_node(node, outputs, ui, started)
