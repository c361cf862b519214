"""Tiny checkpoints written once per session in a models folder, and node contexts over it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import diffusion_fixtures
from visionatrix.models.folders import ModelFolders
from visionatrix.nodes.context import NodeContext, use
from visionatrix.nodes.model_manager import ModelManager

os.environ.setdefault("HF_HUB_OFFLINE", "1")
KINDS = ("sd15", "sd15_inpaint", "sd2", "sdxl", "sdxl_inpaint", "sdxl_refiner", "playground25")


@pytest.fixture(scope="session")
def diffusion_models_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("diffusion_models")
    for kind in KINDS:
        diffusion_fixtures.write_checkpoint(diffusion_fixtures.cached_checkpoint(kind), root / "checkpoints")
    return root


@pytest.fixture
def node_ctx(diffusion_models_dir):
    """A CPU node context with the tiny checkpoints and a fresh model manager, current for the test."""
    ctx = NodeContext(model_folders=ModelFolders(diffusion_models_dir),
                      models=ModelManager(device="cpu", ram_budget_bytes=1 << 30, vram_reserve_bytes=0))
    with use(ctx):
        yield ctx
