"""``nodes``: list the node types this installation can run."""

from __future__ import annotations

import argparse
import json
import sys

from visionatrix.config import Settings
from visionatrix.nodes.registry import NodeRegistry


def load_registry(settings: Settings) -> NodeRegistry:
    """The registry with our packs and the configured extra folders."""
    registry = NodeRegistry()
    registry.load_packs(settings.nodes_dirs, core_dir=settings.core_nodes_dir)
    return registry


def command(args: argparse.Namespace, settings: Settings) -> int:
    registry = load_registry(settings)
    if args.json:
        json.dump(registry.object_info(), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    info = registry.object_info()
    width = max((len(name) for name in info), default=10)
    for name, entry in info.items():
        marker = " [output]" if entry["output_node"] else ""
        print(f"{name:<{width}}  {entry['category']:<24} {entry['python_module']}{marker}")
    print(f"{len(info)} node types", file=sys.stderr)
    for failure in registry.failures:
        print(f"pack {failure.pack} failed to load: {failure.error.strip()}", file=sys.stderr)
    return 0
