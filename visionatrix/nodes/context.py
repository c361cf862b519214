"""The narrow context a running node sees: device, folders, limits, progress and interrupt.

The executor installs one :class:`NodeContext` (through :func:`use`) around each node call, in the thread that runs
the node; node code reads it with :func:`current`. Outside an execution (unit tests calling a node function
directly) :func:`current` returns a CPU context rooted at the working directory, so nodes stay easy to test.
This module imports no torch: ``device`` is a device string such as ``"cpu"`` or ``"cuda:0"``.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visionatrix.errors import Interrupted

DEFAULT_MAX_IMAGE_PIXELS = 64 * 1024 * 1024

ProgressCallback = Callable[[float, float, Any], None]


def _no_progress(value: float, total: float, preview: Any = None) -> None:
    return None


@dataclass
class NodeContext:
    """What a node may use while it runs."""

    device: str = "cpu"
    input_dir: Path = field(default_factory=lambda: Path("input"))
    output_dir: Path = field(default_factory=lambda: Path("output"))
    temp_dir: Path = field(default_factory=lambda: Path("temp"))
    models_dir: Path | None = None
    """Model files, one subfolder per kind (``checkpoints``, ``loras``, ...); ``folder_paths.get_filename_list``
    lists them. None: no models."""
    model_folders: Any = None
    """The worker's :class:`visionatrix.models.folders.ModelFolders` (``folder_paths`` answers from it); None: no
    models."""
    models: Any = None
    """The worker's :class:`visionatrix.nodes.model_manager.ModelManager`: the only way a node loads weights."""
    check_model_files: bool = True
    """False where the graph is validated but runs elsewhere (the server, for its workers): a COMBO of model files
    (``ModelFileList``) then accepts any name, and the worker that runs the graph checks it against its own folders."""
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    remote_vae_decoders: dict[str, str] = field(default_factory=dict)
    """``RemoteVAEDecode``'s endpoint URL per ``vae_type`` (``VIX_REMOTE_VAE_DECODERS``); a type without one
    decodes locally."""
    interrupt_event: threading.Event = field(default_factory=threading.Event)
    on_progress: ProgressCallback = _no_progress
    node_id: str | None = None

    def check_interrupt(self) -> None:
        """Raise :class:`Interrupted` when an interrupt was requested; long nodes call it in their loops."""
        if self.interrupt_event.is_set():
            raise Interrupted()

    def progress(self, value: float, total: float, preview: Any = None) -> None:
        """Report in-node progress (``value`` of ``total``); also a point where an interrupt takes effect."""
        self.check_interrupt()
        self.on_progress(value, total, preview)


_current: contextvars.ContextVar[NodeContext | None] = contextvars.ContextVar("vix_node_context", default=None)


def current() -> NodeContext:
    """The context of the node running in this thread, or a default CPU context."""
    ctx = _current.get()
    return ctx if ctx is not None else NodeContext()


@contextlib.contextmanager
def use(ctx: NodeContext) -> Iterator[NodeContext]:
    """Make ``ctx`` the current node context for the duration of the ``with`` block."""
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


class ProgressBar:
    """In-node progress in ComfyUI's ``comfy.utils.ProgressBar`` shape: ``update(n)`` / ``update_absolute(v)``."""

    def __init__(self, total: float) -> None:
        self.total = total
        self.value = 0.0

    def update_absolute(self, value: float, total: float | None = None, preview: Any = None) -> None:
        if total is not None:
            self.total = total
        self.value = min(value, self.total) if self.total else value
        current().progress(self.value, self.total, preview)

    def update(self, step: float) -> None:
        self.update_absolute(self.value + step)
