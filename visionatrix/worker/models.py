"""A worker's models in its reports, and the model commands an admin sends it.

A report carries ``models``: ``present`` (the catalog models in the worker's own models folder), ``loaded`` (what
its model manager holds, with the bytes in RAM and VRAM) and ``installing`` (the progress of its downloads, ended
ones included until the installer forgets them). Commands come back with a report (``TaskSource.take_commands``):

- ``{"type": "install", "names": [...]}``: download those catalog models into this worker's models folder (the
  server resolved a flow's models to names); names the worker's catalog does not know are reported as failed
  installs, so the admin sees why;
- ``{"type": "free"}``: unload every model the worker's model manager holds.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from visionatrix.errors import NotFound
from visionatrix.models.download import DownloadProgress
from visionatrix.models.graph_names import installed_names
from visionatrix.models.installer import ModelInstaller
from visionatrix.models.inventory import ModelInventory

log = logging.getLogger(__name__)


class WorkerModels:
    """The worker's model store (``inventory``) and its downloads (``installer``)."""

    def __init__(self, inventory: ModelInventory, installer: ModelInstaller) -> None:
        self.inventory = inventory
        self.installer = installer
        self._refused: dict[str, DownloadProgress] = {}

    def graph_for_run(self, graph: dict[str, Any]) -> dict[str, Any]:
        """``graph`` with its catalog models' inputs pointed at the files the catalog installed (see
        :mod:`visionatrix.models.graph_names`)."""
        resolved, changes = installed_names(graph, self.inventory.catalog, self.inventory.folders)
        for node_id, input_name, old, new in changes:
            log.info("node %s: %s %r is installed as %r", node_id, input_name, old, new)
        return resolved

    def installing(self) -> bool:
        """Whether a download is queued or running (the worker then reports more often)."""
        return any(progress.state in ("queued", "downloading", "verifying")
                   for progress in self.installer.progress().values())

    def report(self, executor: Any) -> dict[str, Any]:
        """The ``models`` part of a report."""
        manager = getattr(executor, "models", None)
        stats = manager.stats() if manager is not None else {}
        progress = {**self._refused, **self.installer.progress()}
        self._refused = {}
        return {"present": self.inventory.present(),
                "loaded": [{key: item.get(key) for key in ("name", "kind", "bytes", "where")}
                           for item in stats.get("loaded", [])],
                "ram_bytes": int(stats.get("ram_bytes", 0)), "vram_bytes": int(stats.get("vram_bytes", 0)),
                "installing": {name: _progress_json(item) for name, item in progress.items()}}

    def run(self, command: Mapping[str, Any], executor: Any) -> None:
        """Carry out one admin command (an unknown one is logged and dropped)."""
        kind = command.get("type")
        if kind == "free":
            released = executor.free_models()
            log.info("models freed on request: %d bytes released", released)
        elif kind == "install":
            self._install([str(name) for name in command.get("names") or ()])
        else:
            log.warning("ignoring an unknown worker command: %r", kind)

    def _install(self, names: list[str]) -> None:
        known: list[str] = []
        for name in names:
            try:
                self.inventory.catalog.get(name)
                known.append(name)
            except NotFound:
                self._refused[name] = DownloadProgress(name=name, state="failed", bytes_done=0, bytes_total=None,
                                                       speed_bps=0.0, eta_s=None,
                                                       error=f"model {name!r} is not in this worker's catalog")
        if known:
            started = self.installer.start(known)
            log.info("installing models on request: %s", ", ".join(started) or "none (already installed)")


def _progress_json(progress: DownloadProgress) -> dict[str, Any]:
    event = progress.event()
    return {key: event.get(key) for key in ("state", "bytes_done", "bytes_total", "speed_bps", "eta_s", "error")}
