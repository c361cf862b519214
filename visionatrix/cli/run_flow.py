"""``run-flow``: validate a flow with its parameters, run it, write its outputs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from visionatrix.cli import model_store
from visionatrix.cli.flow_info import load_catalog
from visionatrix.cli.nodes_list import load_registry
from visionatrix.cli.progress import ProgressPrinter
from visionatrix.config import Settings
from visionatrix.errors import Interrupted, InvalidGraph, InvalidParams, NodeFailed, VisionatrixError
from visionatrix.executor.run import Executor, ExecutorSettings
from visionatrix.flows import Flow, FlowStore, bind_params
from visionatrix.models.graph_names import installed_names
from visionatrix.nodes.registry import NodeRegistry


class BadArgument(VisionatrixError):
    """A command-line argument is malformed."""


def parse_pairs(pairs: list[str], option: str) -> dict[str, str]:
    """``["a=1", "b=x=y"]`` → ``{"a": "1", "b": "x=y"}``; a pair without ``=`` or a name is an error."""
    result: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise BadArgument(f"{option} expects NAME=VALUE, got {pair!r}")
        result[name.strip()] = value
    return result


def resolve_flow(ref: str, registry: NodeRegistry, settings: Settings) -> Flow:
    """A flow file path, or the name of a flow in the configured flows folders."""
    store = FlowStore(list(settings.flows_dirs), registry.object_info(), models_catalog=load_catalog(settings))
    return store.open(ref)


def stage_inputs(inputs: dict[str, str], input_dir: Path) -> dict[str, str]:
    """Copy each ``--input`` file into the run's input folder; returns parameter → stored file name."""
    staged: dict[str, str] = {}
    for name, raw_path in inputs.items():
        source = Path(raw_path).expanduser()
        if not source.is_file():
            raise BadArgument(f"--input {name}: {raw_path} is not a readable file")
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        target = input_dir / f"{safe}{source.suffix.lower()}"
        shutil.copyfile(source, target)
        staged[name] = target.name
    return staged


def command(args: argparse.Namespace, settings: Settings) -> int:
    registry = load_registry(settings)
    flow = resolve_flow(args.flow, registry, settings)
    if flow.missing_node_types:
        raise BadArgument(f"flow {flow.name!r} needs node types that are not installed: "
                          f"{', '.join(flow.missing_node_types)}")
    out_dir = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="vix-run-") as scratch:
        input_dir = Path(scratch) / "input"
        input_dir.mkdir()
        try:
            prompt = bind_params(flow, parse_pairs(args.param, "--param"),
                                 stage_inputs(parse_pairs(args.input, "--input"), input_dir))
        except InvalidParams as exc:
            print(f"error: flow {flow.name!r} cannot run with these parameters:", file=sys.stderr)
            for name, why in exc.problems.items():
                print(f"  - {name}: {why}", file=sys.stderr)
            return 2
        folders = model_store.build_folders(settings)
        prompt, changes = installed_names(prompt, model_store.read_catalog_sync(settings), folders)
        for node_id, input_name, old, new in changes:
            print(f"node {node_id}: {input_name} {old!r} is installed as {new!r}", file=sys.stderr)
        executor = Executor(registry, ExecutorSettings(
            device=settings.device, input_dir=input_dir, output_dir=out_dir, temp_dir=Path(scratch) / "temp",
            max_image_pixels=settings.max_image_pixels, cache_max_entries=settings.cache_max_entries,
            cache_max_bytes=settings.cache_max_bytes, model_folders=folders,
            ram_cache_bytes=settings.ram_cache_bytes, vram_reserve_bytes=settings.vram_reserve_bytes,
            remote_vae_decoders=settings.remote_vae_decoders))
        try:
            return _execute(executor, flow, prompt, out_dir, as_json=args.json)
        finally:
            executor.close()


def _execute(executor: Executor, flow: Flow, prompt: dict[str, Any], out_dir: Path, *, as_json: bool) -> int:
    validated = executor.validate(prompt)
    if not validated.ok:
        print(f"error: flow {flow.name!r} failed validation:", file=sys.stderr)
        for line in InvalidGraph(validated.error or {}, validated.node_errors).issue_lines():
            print(f"  - {line}", file=sys.stderr)
        return 2
    out_dir.mkdir(parents=True, exist_ok=True)
    printer = ProgressPrinter(sys.stderr, tty=sys.stderr.isatty())
    try:
        result = asyncio.run(_run(executor, validated, flow, printer))
    except NodeFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except Interrupted:
        print("interrupted", file=sys.stderr)
        return 130
    files = [out_dir / name for _, name in result.output_files()]
    if as_json:
        report = {"flow": flow.name, "outputs": [str(f) for f in files], "ui": result.ui,
                  "timings_s": result.timings_s, "elapsed_s": result.elapsed_s}
        if result.peak_vram_bytes is not None:  # measured on a GPU only
            report["peak_vram_bytes"] = result.peak_vram_bytes
        json.dump(report, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        for path in files:
            print(path)
        slowest = sorted(result.timings_s.items(), key=lambda kv: -kv[1])[:5]
        summary = ", ".join(f"{validated.graph.node(n).class_type}#{n} {t:.3f}s" for n, t in slowest)
        print(f"slowest nodes: {summary}", file=sys.stderr)
    return 0


async def _run(executor: Executor, validated: Any, flow: Flow, printer: ProgressPrinter) -> Any:
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, executor.interrupt)
    extra = {"extra_pnginfo": {"visionatrix_flow": {"name": flow.name, "version": flow.manifest.version}}}
    return await executor.run_validated(validated, extra_data=extra, on_event=printer)
