"""``flow-info``: print, as JSON, the manifest derived from a flow or a ComfyUI workflow file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from visionatrix.cli.nodes_list import load_registry
from visionatrix.config import Settings
from visionatrix.flows import load_flow
from visionatrix.models.catalog import load_catalog_sync


def load_catalog(settings: Settings) -> dict[str, dict[str, Any]] | None:
    """The merged entries of the models catalogs the settings name (``VIX_MODELS_CATALOG``), or None for none;
    :class:`~visionatrix.errors.ModelError` for a catalog that cannot be read."""
    if not settings.models_catalog:
        return None
    return load_catalog_sync(settings.models_catalog).raw


def command(args: argparse.Namespace, settings: Settings) -> int:
    registry = load_registry(settings)
    flow = load_flow(Path(args.file), registry.object_info(), models_catalog=load_catalog(settings))
    json.dump(flow.info(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
