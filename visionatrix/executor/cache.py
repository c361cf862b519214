"""The output cache across runs, keyed by each node's input signature. Imports no torch.

A node's signature hashes its class, its ``IS_CHANGED`` fingerprint, its constants and, for each link, the
signature of the linked node and the output slot (a Merkle hash over the ancestors). Node ids of ancestors do not
matter, so identical sub-graphs share entries; a node whose class is ``NOT_IDEMPOTENT`` or takes the hidden
``UNIQUE_ID`` input also hashes its own id. A fingerprint of NaN, or a constant that cannot be serialized, makes
the node miss every time. Re-running a graph with one changed value therefore recomputes only the nodes
downstream of it. The cache is an LRU bounded in entries and in the bytes of memory its entries keep alive (whole
tensor storages, not views: :mod:`visionatrix.executor.footprint`); models the model manager keeps are left to its
own budgets.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from visionatrix.executor.footprint import Blocks, Owned, compact, estimate_bytes, memory_blocks, never_owned
from visionatrix.executor.graph import Graph, post_order, unwrap
from visionatrix.nodes.describe import input_types
from visionatrix.nodes.registry import NodeRegistry

NEVER_EQUAL = object()
__all__ = ["CacheEntry", "OutputCache", "Owned", "compute_signatures", "estimate_bytes"]


@dataclass
class CacheEntry:
    """What one node produced: one list per output slot, and its ``ui`` dict if any."""

    outputs: list[list[Any]]
    ui: dict[str, Any] | None
    nbytes: int = 0
    """The bytes of memory the outputs and ``ui`` keep alive (set by :meth:`OutputCache.put`)."""
    blocks: Blocks = field(default_factory=dict, repr=False)


class OutputCache:
    """A least-recently-used map from signature to :class:`CacheEntry`, holding at most ``max_entries`` entries
    and ``max_bytes`` bytes of memory (:mod:`visionatrix.executor.footprint`: whole tensor storages, arrays, bytes,
    PIL images... each block counted once however many entries share it); objects ``owned`` says belong to the
    model manager are not counted, the manager accounts for them. An entry bigger than ``max_bytes`` is not cached.
    Thread-safe: the model manager may drop entries from another thread."""

    def __init__(self, max_entries: int = 256, max_bytes: int = 512 * 1024**2, *,
                 owned: Owned | None = None) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.owned = owned or never_owned
        self.nbytes = 0
        self._blocks: dict[Any, list[int]] = {}  # block key -> [bytes, entries holding it]
        self._entries: OrderedDict[str, CacheEntry] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, signature: str) -> CacheEntry | None:
        with self._lock:
            entry = self._entries.get(signature)
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            self._entries.move_to_end(signature)
            return entry

    def put(self, signature: str, entry: CacheEntry) -> None:
        if self.max_entries <= 0:
            return
        entry.outputs = [[compact(item) for item in slot] for slot in entry.outputs]
        entry.blocks = memory_blocks([entry.outputs, entry.ui], self.owned)
        entry.nbytes = sum(entry.blocks.values())
        with self._lock:
            self._pop(signature)
            if entry.nbytes > self.max_bytes:
                return
            self._entries[signature] = entry
            for key, size in entry.blocks.items():
                held = self._blocks.setdefault(key, [size, 0])
                if held[1] == 0:
                    self.nbytes += size
                held[1] += 1
            while len(self._entries) > self.max_entries or self.nbytes > self.max_bytes:
                self._pop(next(iter(self._entries)))

    def discard_holding(self, value: object) -> int:
        """Drop every entry with ``value`` among its outputs (a model the manager let go); returns how many."""
        with self._lock:
            holding = [sig for sig, entry in self._entries.items()
                       if any(_holds(item, value) for slot in entry.outputs for item in slot)]
            for signature in holding:
                self._pop(signature)
            return len(holding)

    def _pop(self, signature: str) -> None:
        entry = self._entries.pop(signature, None)
        if entry is None:
            return
        for key in entry.blocks:
            held = self._blocks[key]
            held[1] -= 1
            if held[1] == 0:
                del self._blocks[key]
                self.nbytes -= held[0]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._blocks.clear()
            self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, signature: object) -> bool:
        return signature in self._entries


def _holds(item: object, model: object) -> bool:
    """Whether the output ``item`` is ``model`` or a value wrapping it: ``held_models()`` (a MODEL or CLIP) or a
    ``module`` attribute (a VAE, a ControlNet)."""
    if item is model:
        return True
    held = getattr(item, "held_models", None)
    if callable(held):
        return any(m is model for m in held())
    return getattr(item, "module", None) is model


def _canonical(value: Any) -> str | None:
    """JSON text of a constant, or None when it cannot be compared between runs."""
    try:
        return json.dumps(unwrap(value), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None


def _fingerprint(value: Any) -> str | None:
    if value is NEVER_EQUAL or (isinstance(value, float) and math.isnan(value)):
        return None
    return _canonical(value) if not isinstance(value, str) else json.dumps(value)


def compute_signatures(graph: Graph, registry: NodeRegistry, node_ids: set[str],
                       fingerprints: dict[str, Any], known: dict[str, str] | None = None) -> dict[str, str]:
    """Signatures of ``node_ids`` and their ancestors; ``fingerprints`` holds each node's IS_CHANGED result.
    Signatures in ``known`` (nodes a node expansion links to) are taken as they are."""
    memo: dict[str, str] = dict(known or {})
    keyed: dict[str, bool] = {}
    for node_id in post_order(graph, sorted(node_ids)).order:
        if node_id in memo:
            continue
        class_type = graph.node(node_id).class_type
        if class_type not in keyed:
            keyed[class_type] = _keyed_by_id(registry.node_class(class_type))
        memo[node_id] = _sign(graph, node_id, keyed[class_type], fingerprints, memo)
    return memo


def _keyed_by_id(node_class: type) -> bool:
    hidden = input_types(node_class)["hidden"]
    return bool(getattr(node_class, "NOT_IDEMPOTENT", False)) or "UNIQUE_ID" in hidden.values()


def _sign(graph: Graph, node_id: str, keyed_by_id: bool, fingerprints: dict[str, Any],
          memo: dict[str, str]) -> str:
    """One node's signature; the signatures of its linked nodes are already in ``memo``."""
    node = graph.node(node_id)
    parts: list[Any] = [node.class_type, node_id if keyed_by_id else None]
    fingerprint = _fingerprint(fingerprints.get(node_id))
    if node_id in fingerprints and fingerprint is None:
        parts.append(uuid.uuid4().hex)
    parts.append(fingerprint)
    for name in sorted(node.inputs):
        link = node.links.get(name)
        if link is not None:
            parts.append([name, "link", memo[link.source], link.slot])
            continue
        text = _canonical(node.inputs[name])
        parts.append([name, text if text is not None else uuid.uuid4().hex])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()
