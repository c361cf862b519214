"""``flow-info``: print, as JSON, the manifest derived from a flow or a ComfyUI workflow file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from visionatrix.cli.nodes_list import load_registry
from visionatrix.config import Settings
from visionatrix.errors import InvalidFlow
from visionatrix.flows import load_flow


def load_catalog(settings: Settings) -> Any:
    """The models catalog named by the settings, or None."""
    if settings.models_catalog is None:
        return None
    try:
        return json.loads(Path(settings.models_catalog).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidFlow(f"models catalog {settings.models_catalog}: {exc}") from None


def command(args: argparse.Namespace, settings: Settings) -> int:
    registry = load_registry(settings)
    flow = load_flow(Path(args.file), registry.object_info(), models_catalog=load_catalog(settings))
    json.dump(flow.info(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
