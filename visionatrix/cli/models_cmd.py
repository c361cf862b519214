"""``models``: the model store from the command line — list, install, verify, remove, orphans.

Exit status: 0 done; 1 a model failed to install, a verified file is corrupt, or a flow needs a model the catalog
cannot install; 2 a bad argument (an unknown model or flow name names every unknown one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from visionatrix.cli import model_store
from visionatrix.cli.nodes_list import load_registry
from visionatrix.config import Settings
from visionatrix.errors import VisionatrixError
from visionatrix.flows import installed
from visionatrix.flows.catalog import FlowCatalog
from visionatrix.flows.importers import load_flow
from visionatrix.models.catalog import ModelsCatalog
from visionatrix.models.inventory import ModelInventory, ModelState, ModelStatus


class UnknownModels(VisionatrixError):
    """Model names the catalog does not have."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        super().__init__(f"not in the models catalog: {', '.join(self.names)}")


class UsageError(VisionatrixError):
    """The command line asks for something impossible."""


def add_parser(commands: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``models`` command and its subcommands (each takes the common and model-folder flags)."""
    models = commands.add_parser("models", help="list, install, verify and remove models of the catalog")
    sub = models.add_subparsers(dest="models_command", required=True, metavar="SUBCOMMAND")

    def child(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text)
        parser.add_argument("--models-dir", help="folder of model files (VIX_MODELS_DIR, default ./models)")
        parser.add_argument("--extra-model-paths", metavar="YAML",
                            help="ComfyUI extra_model_paths.yaml of other collections (VIX_EXTRA_MODEL_PATHS)")
        common(parser)
        return parser

    listing = child("list", "every catalog model with its folder, state and size")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.add_argument("--flow", help="only the models of this flow (a name or a flow file)")
    install = child("install", "download models (or every model of a flow) into the models folder")
    install.add_argument("names", nargs="*", metavar="NAME", help="catalog model names")
    install.add_argument("--flow", help="install every catalog model of this flow (a name or a flow file)")
    verify = child("verify", "check the sha256 of installed model files")
    verify.add_argument("names", nargs="*", metavar="NAME", help="catalog model names (default: every one on disk)")
    remove = child("remove", "delete a model's file and partial download from the models folder")
    remove.add_argument("names", nargs="+", metavar="NAME")
    orphans = child("orphans", "model files in the models folder that no installed flow needs")
    orphans.add_argument("--json", action="store_true", help="print JSON")


def command(args: argparse.Namespace, settings: Settings) -> int:
    folders = model_store.build_folders(settings)
    catalog = model_store.read_catalog_sync(settings)
    inventory = ModelInventory(folders, catalog)
    actions: dict[str, Callable[[], int]] = {
        "list": lambda: _list(args, settings, inventory),
        "install": lambda: _install(args, settings, inventory),
        "verify": lambda: _verify(args.names, inventory),
        "remove": lambda: _remove(args.names, inventory),
        "orphans": lambda: _orphans(args, settings, inventory),
    }
    return actions[args.models_command]()


def human_bytes(size: int | None) -> str:
    """``1536`` -> ``1.5 KiB``; None -> ``?``."""
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns


def _check_names(names: Sequence[str], catalog: ModelsCatalog) -> None:
    unknown = [name for name in dict.fromkeys(names) if name not in catalog]
    if unknown:
        raise UnknownModels(unknown)


# --- flows -----------------------------------------------------------------------------------------------------


def _flow_catalog(settings: Settings, catalog: ModelsCatalog) -> FlowCatalog:
    registry = load_registry(settings)
    return FlowCatalog(list(settings.flows_dirs), settings.user_flows_dir, registry.object_info(),
                       models_catalog=catalog.raw)


def _flow_info(ref: str, settings: Settings, catalog: ModelsCatalog) -> dict[str, Any]:
    """``Flow.info()`` of an installed flow's name or of a flow file."""
    flows = _flow_catalog(settings, catalog)
    if Path(ref).suffix == ".json" and Path(ref).is_file():
        return load_flow(Path(ref), flows.object_info, models_catalog=flows.models_catalog).info()
    return flows.get(ref).info()


# --- subcommands -----------------------------------------------------------------------------------------------


def _list(args: argparse.Namespace, settings: Settings, inventory: ModelInventory) -> int:
    if args.flow:
        models = inventory.catalog.for_flow(_flow_info(args.flow, settings, inventory.catalog))
        statuses = [inventory.status(model.name) for model in models]
    else:
        statuses = inventory.statuses()
    if args.json:
        json.dump([status.as_dict() for status in statuses], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    rows = [(s.model.name, s.model.folder or ".", str(s.state), _size(s), s.problem or "") for s in statuses]
    _table(("NAME", "FOLDER", "STATE", "SIZE", "NOTE"), rows)
    counts = {state: sum(1 for s in statuses if s.state == state) for state in ModelState}
    print(", ".join(f"{count} {state}" for state, count in counts.items() if count) or "no models",
          file=sys.stderr)
    return 0


def _size(status: ModelStatus) -> str:
    if status.state == ModelState.PARTIAL:
        return f"{human_bytes(status.bytes_on_disk)} of {human_bytes(status.model.file_size)}"
    if status.state == ModelState.CORRUPT:
        return human_bytes(status.bytes_on_disk)
    return human_bytes(status.model.file_size)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _install(args: argparse.Namespace, settings: Settings, inventory: ModelInventory) -> int:
    if bool(args.names) == bool(args.flow):
        raise UsageError("models install: give model names or --flow FLOW (not both)")
    lacking: list[str] = []
    if args.flow:
        info = _flow_info(args.flow, settings, inventory.catalog)
        names = [model.name for model in inventory.catalog.for_flow(info)]
        outside = [ref for ref in info["models"] if not ref.get("in_catalog")]
        lacking = installed.missing_models(outside, inventory.folders)
    else:
        names = list(dict.fromkeys(args.names))
        _check_names(names, inventory.catalog)
    code = asyncio.run(_download(names, settings, inventory)) if names else 0
    if lacking:
        print(f"the flow also needs files the catalog cannot install: {', '.join(lacking)}", file=sys.stderr)
        return 1
    return code


async def _download(names: Sequence[str], settings: Settings, inventory: ModelInventory) -> int:
    installer = model_store.build_store(settings, inventory.catalog, inventory.folders,
                                        on_progress=_ProgressLines()).installer
    try:
        started = installer.start(names)
        for name in names:
            if name not in started:
                print(f"{name}: already installed", file=sys.stderr)
        ended = await installer.wait(started)
    finally:
        await installer.aclose()
    failed = [name for name, progress in ended.items() if progress.state != "installed"]
    return 1 if failed else 0


class _ProgressLines:
    """One stderr line per model when its state changes, and at each tenth of its download."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[str, int]] = {}

    def __call__(self, progress: Any) -> None:
        total = progress.bytes_total
        tenth = int(progress.bytes_done * 10 / total) if total else 0
        key = (progress.state, tenth)
        if self._last.get(progress.name) == key:
            return
        self._last[progress.name] = key
        line = f"{progress.name}: {progress.state}"
        if progress.state == "downloading":
            line += f" {human_bytes(progress.bytes_done)} of {human_bytes(total)}"
        if progress.error:
            line += f": {progress.error}"
        print(line, file=sys.stderr, flush=True)


def _verify(names: Sequence[str], inventory: ModelInventory) -> int:
    _check_names(names, inventory.catalog)
    results = inventory.verify(list(dict.fromkeys(names)) or None)
    for status in results:
        verdict = "ok" if status.state == ModelState.INSTALLED else str(status.state)
        print(f"{status.model.name}: {verdict}" + (f" ({status.problem})" if status.problem else ""))
    if not results:
        print("no model files to verify", file=sys.stderr)
    return 1 if any(status.state == ModelState.CORRUPT for status in results) else 0


def _remove(names: Sequence[str], inventory: ModelInventory) -> int:
    _check_names(names, inventory.catalog)
    for name in dict.fromkeys(names):
        removed = inventory.remove(name)
        print(f"{name}: removed {', '.join(map(str, removed))}" if removed else f"{name}: nothing to remove")
    return 0


def _orphans(args: argparse.Namespace, settings: Settings, inventory: ModelInventory) -> int:
    flows = _flow_catalog(settings, inventory.catalog)
    needed = installed.needed_files([flow.info() for flow in flows.flows()], inventory.folders)
    orphans = inventory.orphans(needed)
    sizes = _sizes(orphans)
    if args.json:
        json.dump([{"path": str(path), "size": size} for path, size in sizes.items()], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        for path, size in sizes.items():
            print(f"{path}\t{human_bytes(size)}")
    print(f"{len(orphans)} file(s) no installed flow needs, {human_bytes(sum(sizes.values()))}", file=sys.stderr)
    return 0


def _sizes(paths: Sequence[Path]) -> Mapping[Path, int]:
    sizes = {}
    for path in paths:
        try:
            sizes[path] = path.stat().st_size
        except OSError:
            continue
    return sizes
