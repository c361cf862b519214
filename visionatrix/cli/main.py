"""Argument parsing and dispatch; each command lives in its own module."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from visionatrix import __version__
from visionatrix.cli import models_cmd, users_cmd
from visionatrix.config import Settings, load_settings
from visionatrix.errors import VisionatrixError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nodes-dir", dest="nodes_dirs", action="append", default=[], metavar="DIR",
                        help="extra folder of ComfyUI node packs (repeatable; adds to VIX_NODES_DIRS)")
    parser.add_argument("--models-catalog", metavar="FILE_OR_URL",
                        help="models catalog JSON files or URLs, ';'-separated (VIX_MODELS_CATALOG)")
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
    run.add_argument("--remote-vae-decoders", metavar="TYPE=URL,...",
                     help="RemoteVAEDecode endpoints per VAE type, 'Flux=https://...,SDXL=https://...' or a JSON "
                          "object (VIX_REMOTE_VAE_DECODERS; default: decode locally)")
    run.add_argument("--json", action="store_true", help="print the result as JSON")
    _common(run)

    info = commands.add_parser("flow-info", help="print the manifest derived from a flow or ComfyUI workflow")
    info.add_argument("file", help="flow file, Visionatrix flow, ComfyUI API graph or UI workflow (.json)")
    _common(info)

    serve = commands.add_parser("run", help="start the service (server + in-process worker in DEFAULT mode)")
    serve.add_argument("--host", help="bind address (VIX_HOST, default 127.0.0.1); a WORKER's server URL, "
                                      "http://host:port")
    serve.add_argument("--port", type=int, help="port (VIX_PORT, default 8288)")
    serve.add_argument("--mode", help="DEFAULT, SERVER or WORKER (VIX_MODE)")
    serve.add_argument("--database-uri", help="SQLAlchemy URL (DATABASE_URI)")
    serve.add_argument("--tasks_files_dir", "--tasks-files-dir", dest="tasks_files_dir",
                       help="folder of task inputs and outputs (TASKS_FILES_DIR)")
    serve.add_argument("--user-flows-dir", help="folder where uploaded flows are kept (VIX_USER_FLOWS_DIR)")
    serve.add_argument("--user-dir", help="the graph editor's settings and saved workflows (VIX_USER_DIR)")
    serve.add_argument("--task-lease-s", type=float, help="task lease length in seconds (VIX_TASK_LEASE_S)")
    serve.add_argument("--worker-name", "--worker-id", dest="worker_name",
                       help="this worker's name in GET /vapi/workers (VIX_WORKER_NAME; default host:device)")
    serve.add_argument("--flows", action="append", default=[], metavar="NAME",
                       help="a flow this worker takes (repeatable; VIX_WORKER_FLOWS, ';'-separated; default: every "
                            "flow whose nodes and models it has)")
    serve.add_argument("--worker-auth", help="worker credentials, user:password or a token (WORKER_AUTH)")
    serve.add_argument("--models-dir", help="folder of model files (VIX_MODELS_DIR, default ./models)")
    serve.add_argument("--extra-model-paths", metavar="YAML",
                       help="ComfyUI extra_model_paths.yaml of other collections (VIX_EXTRA_MODEL_PATHS)")
    serve.add_argument("--no-claim-ahead", dest="claim_ahead", action="store_const", const=False, default=None,
                       help="claim a task only when the executor is free (VIX_WORKER_CLAIM_AHEAD=0)")
    serve.add_argument("--device", help="cpu, cuda or cuda:N (VIX_DEVICE)")
    serve.add_argument("--auth", choices=("on", "off"),
                       help="require sign-in (VIX_AUTH; default: on when --host is not a loopback address)")
    serve.add_argument("--remote-vae-decoders", metavar="TYPE=URL,...",
                       help="RemoteVAEDecode endpoints per VAE type, 'Flux=https://...,SDXL=https://...' or a JSON "
                            "object (VIX_REMOTE_VAE_DECODERS; default: decode locally)")
    _common(serve)

    migrate = commands.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("--database-uri", help="SQLAlchemy URL (DATABASE_URI)")
    _common(migrate)

    models_cmd.add_parser(commands, _common)
    users_cmd.add_parsers(commands, _common)

    nodes = commands.add_parser("nodes", help="list node types")
    nodes.add_argument("--json", action="store_true", help="print the /object_info description of every node")
    _common(nodes)
    return parser


_FLAGS = ("nodes_dirs", "models_catalog", "device", "max_image_pixels", "log_level", "host", "port", "mode",
          "database_uri", "tasks_files_dir", "user_flows_dir", "task_lease_s", "worker_name", "flows", "worker_auth",
          "models_dir", "claim_ahead", "user_dir", "extra_model_paths", "remote_vae_decoders", "auth")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        flags = {name: getattr(args, name, None) for name in _FLAGS}
        settings = load_settings(**flags)
    except VisionatrixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (``... | head``): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    # aiosqlite logs every statement with its parameters at DEBUG: password hashes and token digests among them
    logging.getLogger("aiosqlite").setLevel(max(logging.INFO, logging.getLogger().level))
    return _dispatch(args, settings)


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    import importlib

    modules = {"run-flow": "run_flow", "flow-info": "flow_info", "nodes": "nodes_list", "run": "serve",
               "migrate": "migrate_db", "models": "models_cmd", "users": "users_cmd", "worker-tokens": "users_cmd"}
    module = importlib.import_module(f"visionatrix.cli.{modules[args.command]}")
    try:
        code = int(module.command(args, settings))
        sys.stdout.flush()  # here, not at exit: a reader gone by then would turn status 0 into 120
        return code
    except VisionatrixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (``... | head``): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
