"""The flows a server offers: bundled ones (read-only folders) plus flows users uploaded (``<name>.json`` files).

Bundled flows come first: an upload may not take a bundled flow's name, and an uploaded file that declares one is
skipped and reported in ``problems``. Replacing an uploaded flow with a new upload of the same name is allowed.
Names are ids, never paths.

Every bundled flow is installed until someone uninstalls it (``delete``); ``install_bundled`` brings it back. The
names of uninstalled bundled flows are kept in ``user_dir/.uninstalled_bundled`` (a JSON list), so the choice
survives restarts and the bundled folders stay read-only.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from visionatrix.errors import Conflict, InvalidFlow, NotFound
from visionatrix.flows.flow import Flow
from visionatrix.flows.importers import CompiledCatalog, load_flow
from visionatrix.flows.importers.source import MAX_FLOW_BYTES, parse_json_text
from visionatrix.flows.manifest import FLOW_NAME_RE
from visionatrix.flows.node_specs import ObjectInfo
from visionatrix.flows.store import FlowStore
from visionatrix.storage import streams

log = logging.getLogger(__name__)
UNINSTALLED_FILE = ".uninstalled_bundled"


class FlowCatalog:
    """Bundled flows from ``bundled_dirs`` and uploaded flows kept in ``user_dir`` (created on the first upload)."""

    def __init__(
        self,
        bundled_dirs: Iterable[Path | str],
        user_dir: Path | str,
        object_info: ObjectInfo,
        *,
        models_catalog: Mapping[str, Any] | CompiledCatalog | None = None,
    ) -> None:
        self.object_info = object_info
        self.models_catalog = CompiledCatalog(models_catalog) if isinstance(models_catalog, Mapping) else models_catalog
        self.bundled = FlowStore(bundled_dirs, object_info, models_catalog=self.models_catalog)
        self.user_dir = Path(user_dir)
        self._uploaded = FlowStore([self.user_dir], object_info, models_catalog=self.models_catalog)
        self._uninstalled: set[str] = set()
        self._loaded = False

    def refresh(self) -> None:
        """Read the bundled folders, the upload folder and the list of uninstalled bundled flows again."""
        self.bundled.refresh()
        self._uploaded.refresh()
        self._uninstalled = _read_names(self.user_dir / UNINSTALLED_FILE)
        self._loaded = True

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self.refresh()

    def _uploaded_flows(self) -> dict[str, Flow]:
        """Uploaded flows whose names do not clash with a bundled flow."""
        self._ensure_loaded()
        if not self.user_dir.is_dir():
            return {}
        bundled = set(self.bundled.names())
        return {flow.name: flow for flow in self._uploaded.flows() if flow.name not in bundled}

    @property
    def problems(self) -> dict[str, str]:
        """``path -> reason`` for every file that was skipped (unreadable, or a name that is already taken)."""
        self._ensure_loaded()
        problems = dict(self.bundled.problems)
        if self.user_dir.is_dir():
            problems.update({path: why for path, why in self._uploaded.problems.items() if path != str(self.user_dir)})
            bundled = set(self.bundled.names())
            for flow in self._uploaded.flows():
                if flow.name in bundled:
                    problems[str(flow.source)] = f"flow {flow.name!r} is a bundled flow; the upload is ignored"
        return problems

    def names(self) -> list[str]:
        """The installed flows: bundled ones not uninstalled, and uploaded ones."""
        self._ensure_loaded()
        return sorted({*self._installed_bundled(), *self._uploaded_flows()})

    def flows(self) -> list[Flow]:
        return [self.get(name) for name in self.names()]

    def is_bundled(self, name: str) -> bool:
        self._ensure_loaded()
        return name in self.bundled.names()

    def _installed_bundled(self) -> list[str]:
        return [name for name in self.bundled.names() if name not in self._uninstalled]

    def bundled_flows(self) -> list[tuple[Flow, bool]]:
        """Every bundled flow, by name, with whether it is installed."""
        self._ensure_loaded()
        return [(self.bundled.get(name), name not in self._uninstalled) for name in sorted(self.bundled.names())]

    def install_bundled(self, name: str) -> Flow:
        """Install the bundled flow ``name`` again (a no-op when it is installed); ``NotFound`` when no bundled flow
        has that name."""
        if not isinstance(name, str) or not self.is_bundled(name):
            raise NotFound("bundled flow", str(name))
        if name in self._uninstalled:
            self._save_uninstalled(self._uninstalled - {name})
        return self.bundled.get(name)

    def _save_uninstalled(self, names: set[str]) -> None:
        self.user_dir.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.user_dir / UNINSTALLED_FILE, sorted(names))
        self._uninstalled = names

    def get(self, name: str) -> Flow:
        """The installed flow called ``name``; ``NotFound`` for an unknown name, an uninstalled bundled flow or a
        name that is not a plain id."""
        if not isinstance(name, str) or not FLOW_NAME_RE.match(name):
            raise NotFound("flow", str(name))
        self._ensure_loaded()  # every request looks its flow up here: lookups only, nothing sorted or listed
        bundled = self.bundled.find(name)
        if bundled is not None:
            if name in self._uninstalled:
                raise NotFound("flow", name)
            return bundled
        flow = self._uploaded.find(name) if self.user_dir.is_dir() else None
        if flow is None:
            raise NotFound("flow", name)
        return flow

    def add(self, source: Mapping[str, Any] | bytes | str, *, name: str | None = None) -> Flow:
        """Import ``source`` (parsed JSON, or JSON bytes/text) and keep it as ``<flow name>.json``.

        ``name`` names a flow that carries no name of its own (a graph without metadata). ``InvalidFlow`` when
        it does not import; ``Conflict`` when the name belongs to a bundled flow. An uploaded flow of the same
        name is replaced.
        """
        data = _parse(source)
        flow = self._import(data, name)
        if self.is_bundled(flow.name):
            raise Conflict(f"flow {flow.name!r} is a bundled flow and cannot be replaced by an upload")
        old = self._uploaded_flows().get(flow.name)
        self.user_dir.mkdir(parents=True, exist_ok=True)
        target = self.user_dir / f"{flow.name}.json"
        _write_atomically(target, data)
        if old is not None and old.source is not None and old.source != target:
            old.source.unlink(missing_ok=True)
        self._uploaded.refresh()
        return self.get(flow.name)

    def delete(self, name: str) -> None:
        """Remove an uploaded flow, or uninstall a bundled one (``install_bundled`` brings it back); ``NotFound``
        for an unknown or already uninstalled one."""
        flow = self.get(name)
        if self.is_bundled(name):
            self._save_uninstalled(self._uninstalled | {name})
            return
        if flow.source is not None:
            flow.source.unlink(missing_ok=True)
        self._uploaded.refresh()

    def _import(self, data: Any, name: str | None) -> Flow:
        try:
            return load_flow(data, self.object_info, models_catalog=self.models_catalog)
        except InvalidFlow:
            if name is None:
                raise
            # A graph without a name of its own: the retry with ``name`` either works or raises the real problem.
            return load_flow(data, self.object_info, models_catalog=self.models_catalog, name=name)


def _read_names(path: Path) -> set[str]:
    """The names in the JSON list at ``path`` (none when it is missing; a damaged file counts as empty)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return set()
    except (OSError, ValueError):
        log.warning("%s is unreadable; every bundled flow counts as installed", path)
        return set()
    return {item for item in data if isinstance(item, str)} if isinstance(data, list) else set()


def _parse(source: Mapping[str, Any] | bytes | str) -> Any:
    if isinstance(source, Mapping):
        return dict(source)
    if isinstance(source, bytes):
        if len(source) > MAX_FLOW_BYTES:
            raise InvalidFlow(f"upload: {len(source)} bytes is over the limit of {MAX_FLOW_BYTES} bytes for a flow")
        try:
            source = source.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidFlow(f"upload: not UTF-8 text (byte {exc.start})") from exc
    if isinstance(source, str):
        return parse_json_text(source, "upload")
    raise InvalidFlow(f"cannot read a flow from a {type(source).__name__}; give JSON text or an object")


def _write_atomically(target: Path, data: Any) -> None:
    streams.write_json_atomically(target, data)
