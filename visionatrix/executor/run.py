"""The executor: validates prompts and runs them in one thread per device, callable from async code.

Torch work never runs on the asyncio loop: each :class:`Executor` owns a single-thread pool for its device, so
tensors stay on that device between nodes and node code never runs concurrently with itself. Events produced in
the device thread are handed to the caller's callback on the event loop, in order.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visionatrix.errors import Interrupted, NodeFailed
from visionatrix.executor import events
from visionatrix.executor.cache import OutputCache
from visionatrix.executor.scheduler import Run
from visionatrix.executor.validation import Validated, validate
from visionatrix.hostinfo import host_memory
from visionatrix.nodes.context import DEFAULT_MAX_IMAGE_PIXELS, NodeContext, use
from visionatrix.nodes.model_manager import ModelManager
from visionatrix.nodes.registry import NodeRegistry

EventCallback = Callable[[events.Event], None]


@dataclass
class ExecutorSettings:
    """Every knob of the executor; ``device=None`` picks CUDA when available, else CPU."""

    device: str | None = None
    input_dir: Path = field(default_factory=lambda: Path("input"))
    output_dir: Path = field(default_factory=lambda: Path("output"))
    temp_dir: Path = field(default_factory=lambda: Path("temp"))
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    cache_max_entries: int = 256
    cache_max_bytes: int = 512 * 1024**2
    """Estimated bytes of tensors the output cache keeps between runs (models the manager keeps not counted)."""
    model_folders: Any = None
    """A :class:`visionatrix.models.folders.ModelFolders`, built by the composition root; None: no models."""
    ram_cache_bytes: int | None = None
    """RAM the model manager may keep models in; None: half of the host's RAM."""
    vram_reserve_bytes: int = 1024**3
    """VRAM left free for activations when the model manager places models on a GPU."""
    remote_vae_decoders: dict[str, str] = field(default_factory=dict)
    """``RemoteVAEDecode``'s endpoint URL per ``vae_type`` (``Settings.remote_vae_decoders``); empty: local."""


class Executor:
    """Validates and runs prompts against a node registry; one run at a time on its device thread."""

    def __init__(self, registry: NodeRegistry, settings: ExecutorSettings | None = None) -> None:
        from visionatrix.executor.devices import pick_device

        self.registry = registry
        self.settings = settings or ExecutorSettings()
        self.device = pick_device(self.settings.device)
        self.models = ModelManager(device=self.device, ram_budget_bytes=_ram_budget_bytes(self.settings),
                                   vram_reserve_bytes=self.settings.vram_reserve_bytes,
                                   on_drop=self._forget_model)
        self.cache = OutputCache(self.settings.cache_max_entries, self.settings.cache_max_bytes,
                                 owned=self.models.owns)
        self.objects: dict[tuple[str, str], Any] = {}
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"vix-{self.device}")
        self._interrupt = threading.Event()
        self._run_lock = asyncio.Lock()

    def validate(self, prompt: Any, *, targets: list[str] | None = None, input_dir: Path | None = None) -> Validated:
        """Every problem of ``prompt``, without running it (nodes' checks see this executor's folders)."""
        with use(self._context(input_dir, None)):
            return validate(prompt, self.registry, targets=targets)

    def _context(self, input_dir: Path | None, output_dir: Path | None, temp_dir: Path | None = None) -> NodeContext:
        return NodeContext(
            device=self.device,
            input_dir=input_dir or self.settings.input_dir,
            output_dir=output_dir or self.settings.output_dir,
            temp_dir=temp_dir or self.settings.temp_dir,
            max_image_pixels=self.settings.max_image_pixels,
            interrupt_event=self._interrupt,
            model_folders=self.settings.model_folders,
            models=self.models,
            remote_vae_decoders=self.settings.remote_vae_decoders,
        )

    def interrupt(self) -> None:
        """Ask the running prompt to stop at the next node, mapped call or in-node progress report."""
        self._interrupt.set()

    def clear_cache(self) -> None:
        """Forget cached outputs and node instances; loaded models stay (see :meth:`free_models`)."""
        self.cache.clear()
        self.objects.clear()

    def free_models(self) -> int:
        """Unload every model the manager keeps (those a running node holds stay until it ends); returns the bytes
        released. Output-cache entries holding them go too."""
        return self.models.free()

    def _forget_model(self, model: object) -> None:
        # called by the manager for each model it lets go: a cached loader output must not keep it alive
        self.cache.discard_holding(model)

    def close(self) -> None:
        self._thread.shutdown(wait=True)

    async def execute(
        self,
        prompt: Any,
        *,
        prompt_id: str | None = None,
        extra_data: dict[str, Any] | None = None,
        targets: list[str] | None = None,
        on_event: EventCallback | None = None,
        input_dir: Path | None = None,
        output_dir: Path | None = None,
        temp_dir: Path | None = None,
    ) -> events.ExecutionResult:
        """Validate (raising :class:`InvalidGraph` with every problem) and run ``prompt`` (``temp_dir``: where this
        run's temporary files go; None: the settings' folder)."""
        validated = self.validate(prompt, targets=targets, input_dir=input_dir)
        validated.raise_for_errors()
        return await self.run_validated(validated, prompt_id=prompt_id, extra_data=extra_data, on_event=on_event,
                                        input_dir=input_dir, output_dir=output_dir, temp_dir=temp_dir)

    async def run_validated(
        self,
        validated: Validated,
        *,
        prompt_id: str | None = None,
        extra_data: dict[str, Any] | None = None,
        on_event: EventCallback | None = None,
        input_dir: Path | None = None,
        output_dir: Path | None = None,
        temp_dir: Path | None = None,
    ) -> events.ExecutionResult:
        """Run an already validated prompt; raises :class:`NodeFailed` or :class:`Interrupted`."""
        loop = asyncio.get_running_loop()
        prompt_id = prompt_id or uuid.uuid4().hex

        def emit(event: events.Event) -> None:
            if on_event is not None:
                loop.call_soon_threadsafe(on_event, event)

        async with self._run_lock:
            self._interrupt = threading.Event()
            ctx = self._context(input_dir, output_dir, temp_dir)
            run = Run(registry=self.registry, validated=validated, cache=self.cache, objects=self.objects, ctx=ctx,
                      prompt_id=prompt_id, extra_data=extra_data or {}, emit=emit)
            try:
                return await loop.run_in_executor(self._thread, self._run_in_thread, run)
            except Interrupted:
                emit(events.ExecutionInterrupted(prompt_id, getattr(run, "current_node", None)))
                raise
            except NodeFailed as exc:
                emit(events.ExecutionFailed(prompt_id, exc.node_id, exc.class_type, str(exc),
                                            getattr(exc, "traceback", "")))
                raise

    def _run_in_thread(self, run: Run) -> events.ExecutionResult:
        import torch

        from visionatrix.executor.devices import peak_vram_bytes, reset_peak_vram

        if self.device.startswith("cuda"):
            torch.cuda.set_device(torch.device(self.device))
        reset_peak_vram(self.device)
        with torch.inference_mode():
            result = run.execute()
        result.peak_vram_bytes = peak_vram_bytes(self.device)
        return result



def _ram_budget_bytes(settings: ExecutorSettings) -> int:
    if settings.ram_cache_bytes is not None:
        return settings.ram_cache_bytes
    return host_memory()[0] // 2
