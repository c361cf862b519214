"""The tiny SD1.5 fixture VAE (diffusers' ``AutoencoderKL``, four levels: 8x like the real ones) and node contexts."""

from __future__ import annotations

import os

import pytest

from tests import diffusion_fixtures
from visionatrix.diffusion.vae import Vae
from visionatrix.nodes.context import NodeContext, use

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def autoencoder():
    """The fixture's ``AutoencoderKL`` (shared: read-only)."""
    return diffusion_fixtures.cached_checkpoint("sd15").vae


@pytest.fixture
def vae(autoencoder) -> Vae:
    return Vae(autoencoder, name="tiny")


@pytest.fixture
def ctx():
    """A plain CPU node context (no model manager), current for the test; progress calls are recorded."""
    calls: list[tuple[float, float]] = []
    context = NodeContext(on_progress=lambda value, total, preview=None: calls.append((value, total)))
    context.progress_calls = calls  # type: ignore[attr-defined]
    with use(context):
        yield context
