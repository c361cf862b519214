"""The server's place among the layers: lower layers never import it, the client imports nothing of the server,
and importing the server starts nothing (no engine, no registry scan, no event loop work)."""

from __future__ import annotations

import subprocess
import sys

from tests.unit.server.helpers import ROOT

LOWER_LAYERS = ("db", "queue", "storage", "executor", "nodes", "flows")


def test_lower_layers_do_not_import_the_server_or_the_client() -> None:
    for layer in LOWER_LAYERS:
        for path in (ROOT / "visionatrix" / layer).rglob("*.py"):
            text = path.read_text()
            assert "visionatrix.server" not in text and "visionatrix.client" not in text, path


def test_the_client_depends_on_nothing_but_aiohttp_and_itself() -> None:
    for path in (ROOT / "visionatrix" / "client").rglob("*.py"):
        imports = [line for line in path.read_text().splitlines() if line.startswith(("from visionatrix",
                                                                                       "import visionatrix"))]
        assert all(line.startswith("from visionatrix.client") for line in imports), (path, imports)


def test_the_server_uses_only_validation_from_the_executor() -> None:
    for path in (ROOT / "visionatrix" / "server").rglob("*.py"):
        for line in path.read_text().splitlines():
            if line.startswith("from visionatrix.executor"):
                assert line.startswith("from visionatrix.executor.validation import"), (path, line)


def test_importing_the_server_and_client_loads_no_torch_and_opens_nothing() -> None:
    code = (
        "import sys, threading\n"
        "import visionatrix.server.app, visionatrix.server.openapi, visionatrix.client\n"
        "print(sum(m == 'torch' or m.startswith('torch.') for m in sys.modules), threading.active_count())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["0", "1"]
