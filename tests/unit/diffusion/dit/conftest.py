"""Node instances over a models folder, with a fresh CPU model manager, current for a test."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from visionatrix.models.folders import ModelFolders
from visionatrix.nodes.context import NodeContext, use
from visionatrix.nodes.model_manager import ModelManager

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@contextlib.contextmanager
def node_instances(models_dir: Path) -> Iterator[dict[str, Any]]:
    """Every diffusion node, instantiated, in a node context over ``models_dir``."""
    from comfy_nodes.diffusion import NODE_CLASS_MAPPINGS

    ctx = NodeContext(model_folders=ModelFolders(models_dir),
                      models=ModelManager(device="cpu", ram_budget_bytes=1 << 30, vram_reserve_bytes=0))
    with use(ctx):
        yield {name: cls() for name, cls in NODE_CLASS_MAPPINGS.items()}
