"""Typed events the executor emits while it runs a prompt (past tense, one dataclass each)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ExecutionStarted:
    prompt_id: str
    planned_nodes: int


@dataclass(frozen=True)
class NodesCached:
    prompt_id: str
    node_ids: list[str]


@dataclass(frozen=True)
class NodeStarted:
    prompt_id: str
    node_id: str
    class_type: str
    index: int
    planned_nodes: int
    display_node_id: str | None = None
    """The node of the submitted graph that ``node_id`` runs for (a node made by expansion runs for the graph's node
    that expanded, recursively, as ComfyUI's ``display_node``); None: ``node_id`` itself."""


@dataclass(frozen=True)
class NodeProgressed:
    prompt_id: str
    node_id: str
    value: float
    total: float
    preview: Any = None
    """What the node passed as a preview (ComfyUI's ``("JPEG", PIL image, max size)``, or an image), if anything."""
    display_node_id: str | None = None


@dataclass(frozen=True)
class NodeFinished:
    prompt_id: str
    node_id: str
    class_type: str
    elapsed_s: float
    ui: dict[str, Any] | None = None
    display_node_id: str | None = None


@dataclass(frozen=True)
class ExecutionFinished:
    prompt_id: str
    elapsed_s: float


@dataclass(frozen=True)
class ExecutionFailed:
    prompt_id: str
    node_id: str | None
    class_type: str | None
    message: str
    traceback: str = ""


@dataclass(frozen=True)
class ExecutionInterrupted:
    prompt_id: str
    node_id: str | None = None


Event = (
    ExecutionStarted
    | NodesCached
    | NodeStarted
    | NodeProgressed
    | NodeFinished
    | ExecutionFinished
    | ExecutionFailed
    | ExecutionInterrupted
)


@dataclass
class ExecutionResult:
    """What a run produced: ``ui`` per output node, timings, and which nodes ran or came from the cache."""

    prompt_id: str
    ui: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, list[list[Any]]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    peak_vram_bytes: int | None = None
    """The most GPU memory torch held allocated during the run (models included); None on a CPU device."""
    parents: dict[str, str] = field(default_factory=dict)
    """Node made by expansion -> the node that expanded into it."""
    display: dict[str, str] = field(default_factory=dict)
    """Node made by expansion -> the submitted graph's node it shows as (ComfyUI's ``display_node``)."""

    def output_files(self) -> list[tuple[str, str]]:
        """``(node_id, relative path)`` of every file the output nodes reported with ``type: "output"``
        (ComfyUI's ``{"images": [{"filename", "subfolder", "type"}]}`` convention, any ui key)."""
        files = []
        for node_id, node_ui in self.ui.items():
            for items in node_ui.values():
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, dict) and item.get("type") == "output" and "filename" in item:
                        name = "/".join(p for p in (item.get("subfolder", ""), item["filename"]) if p)
                        files.append((node_id, name))
        return files
