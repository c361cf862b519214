"""The storage layer stands alone: no torch, nothing from the layers above it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_importing_storage_loads_no_torch_and_no_upper_layer():
    code = (
        "import sys, visionatrix.storage\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'\n"
        "             or m.startswith(('visionatrix.server', 'visionatrix.worker', 'visionatrix.queue'))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)

    assert proc.stdout.strip() == "[]"


def test_storage_sources_do_not_name_the_layers_above():
    for path in (ROOT / "visionatrix" / "storage").rglob("*.py"):
        text = path.read_text()
        for layer in ("visionatrix.server", "visionatrix.worker", "visionatrix.queue", "visionatrix.cli"):
            assert layer not in text, (path, layer)
