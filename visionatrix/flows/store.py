"""Flows kept as ``*.json`` files in folders, found by their manifest name.

Folders are read in the order given; when two files declare the same flow name the first one wins (like
``PATH``) and the other is reported in ``problems``, as is every file that does not import. Names are ids, never
paths: ``get("../x")`` is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from visionatrix.errors import InvalidFlow, NotFound
from visionatrix.flows.flow import Flow
from visionatrix.flows.importers import CompiledCatalog, load_flow
from visionatrix.flows.manifest import FLOW_NAME_RE
from visionatrix.flows.node_specs import ObjectInfo


class FlowStore:
    def __init__(
        self,
        dirs: Iterable[Path | str],
        object_info: ObjectInfo,
        *,
        models_catalog: Mapping[str, Any] | CompiledCatalog | None = None,
    ) -> None:
        self.dirs = [Path(d) for d in dirs]
        self.object_info = object_info
        self.models_catalog = CompiledCatalog(models_catalog) if isinstance(models_catalog, Mapping) else models_catalog
        self._flows: dict[str, Flow] | None = None
        self.problems: dict[str, str] = {}
        """``path -> reason`` for every file that was skipped during the last scan."""

    def refresh(self) -> None:
        """Read the folders again."""
        flows: dict[str, Flow] = {}
        problems: dict[str, str] = {}
        for folder in self.dirs:
            if not folder.is_dir():
                problems[str(folder)] = "not a folder"
                continue
            for path in sorted(folder.glob("*.json")):
                try:
                    flow = load_flow(path, self.object_info, models_catalog=self.models_catalog)
                except InvalidFlow as exc:
                    problems[str(path)] = exc.message
                    continue
                if flow.name in flows:
                    problems[str(path)] = f"flow {flow.name!r} is already defined by {flows[flow.name].source}"
                    continue
                flows[flow.name] = flow
        self._flows, self.problems = flows, problems

    def _index(self) -> dict[str, Flow]:
        if self._flows is None:
            self.refresh()
        assert self._flows is not None
        return self._flows

    def names(self) -> list[str]:
        """Names of every flow the folders hold, sorted."""
        return sorted(self._index())

    def flows(self) -> list[Flow]:
        return [self._index()[name] for name in self.names()]

    def find(self, name: str) -> Flow | None:
        """The flow called ``name``, or None (one dictionary lookup: no sorting, no check of the name)."""
        return self._index().get(name)

    def get(self, name: str) -> Flow:
        """The flow called ``name``; a name that is not a plain id (a path, ``..``) is refused."""
        if not isinstance(name, str) or not FLOW_NAME_RE.match(name):
            raise InvalidFlow(f"{name!r} is not a flow name (lower-case letters, digits, '_', '-'; no paths)")
        flow = self._index().get(name)
        if flow is None:
            raise NotFound("flow", name)
        return flow

    def open(self, ref: str | Path) -> Flow:
        """A flow file when ``ref`` looks like a path (has a folder part or ends in ``.json``), else ``get(ref)``."""
        text = str(ref)
        if isinstance(ref, Path) or text.endswith(".json") or "/" in text or "\\" in text:
            return load_flow(Path(ref), self.object_info, models_catalog=self.models_catalog)
        return self.get(text)
