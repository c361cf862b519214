"""Module rules from the architecture: torch-free core modules, nothing happens at import time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

TORCH_FREE = [
    "visionatrix.executor.graph",
    "visionatrix.executor.validation",
    "visionatrix.executor.cache",
    "visionatrix.executor.scheduler",
    "visionatrix.executor.run",
    "visionatrix.nodes.registry",
    "visionatrix.flows",
    "visionatrix.models.catalog",
    "visionatrix.models.inventory",
    "visionatrix.models.installer",
    "visionatrix.config",
    "visionatrix.auth.store",
]


def test_graph_validation_cache_and_flows_import_no_torch():
    code = "import sys\n" + "".join(f"import {m}\n" for m in TORCH_FREE) + (
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith('torch.')]\nprint(len(bad))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "0"


def test_core_layers_do_not_import_server_or_worker():
    for layer in ("executor", "nodes", "flows", "models", "auth"):
        for path in (ROOT / "visionatrix" / layer).rglob("*.py"):
            text = path.read_text()
            assert "visionatrix.server" not in text and "visionatrix.worker" not in text, path
            assert "visionatrix.cli" not in text, path
