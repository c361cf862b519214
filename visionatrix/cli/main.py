"""Argument parsing and dispatch; each command lives in its own module."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from visionatrix import __version__
from visionatrix.config import Settings, load_settings
from visionatrix.errors import VisionatrixError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes-dir", dest="nodes_dirs", action="append", default=[], metavar="DIR",
                        help="extra folder of ComfyUI node packs (repeatable; adds to VIX_NODES_DIRS)")
    parser.add_argument("--models-catalog", metavar="FILE", help="models catalog JSON (VIX_MODELS_CATALOG)")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (LOG_LEVEL)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m visionatrix", description="Visionatrix command line.")
    parser.add_argument("--version", action="version", version=f"visionatrix {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run-flow", help="validate and run a flow, writing its outputs")
    run.add_argument("flow", help="flow file (.json) or the name of a flow in the flows folders")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", help="set a parameter")
    run.add_argument("--input", action="append", default=[], metavar="NAME=PATH", help="give an image parameter")
    run.add_argument("--out", default="output", metavar="DIR", help="folder for the outputs (default: output)")
    run.add_argument("--device", help="cpu, cuda or cuda:N (VIX_DEVICE; default: CUDA when available)")
    run.add_argument("--max-image-pixels", type=int, help="refuse input images larger than this")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    _common(run)

    info = commands.add_parser("flow-info", help="print the manifest derived from a flow or ComfyUI workflow")
    info.add_argument("file", help="flow file, Visionatrix flow, ComfyUI API graph or UI workflow (.json)")
    _common(info)

    nodes = commands.add_parser("nodes", help="list node types")
    nodes.add_argument("--json", action="store_true", help="print the /object_info description of every node")
    _common(nodes)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(nodes_dirs=args.nodes_dirs, models_catalog=args.models_catalog,
                                 device=getattr(args, "device", None),
                                 max_image_pixels=getattr(args, "max_image_pixels", None), log_level=args.log_level)
    except VisionatrixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    return _dispatch(args, settings)


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    from visionatrix.cli import flow_info, nodes_list, run_flow

    commands = {"run-flow": run_flow.command, "flow-info": flow_info.command, "nodes": nodes_list.command}
    try:
        return commands[args.command](args, settings)
    except VisionatrixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
