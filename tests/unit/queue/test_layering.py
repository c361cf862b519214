"""The database and queue layers stand alone: nothing from the layers above, nothing done at import time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
UPPER = ("visionatrix.server", "visionatrix.worker", "visionatrix.cli", "visionatrix.executor", "visionatrix.storage")


def test_db_and_queue_sources_do_not_name_the_layers_above():
    sources = [*(ROOT / "visionatrix" / "db").rglob("*.py"), *(ROOT / "visionatrix" / "queue").rglob("*.py")]
    assert len(sources) >= 8
    for path in sources:
        text = path.read_text()
        for layer in UPPER:
            assert layer not in text, (path, layer)


def test_importing_db_and_queue_loads_no_upper_layer_no_torch_and_opens_no_engine():
    code = (
        "import sys, gc\n"
        "import visionatrix.db.engine, visionatrix.db.tables, visionatrix.db.migrate, visionatrix.db.types\n"
        "import visionatrix.queue.manager, visionatrix.queue.events, visionatrix.queue.claim\n"
        "import visionatrix.queue.writes, visionatrix.queue.lease, visionatrix.queue.records\n"
        "from sqlalchemy.engine import Engine\n"
        f"upper = sorted(m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith({UPPER!r}))\n"
        "engines = [o for o in gc.get_objects() if isinstance(o, Engine)]\n"
        "drivers = sorted(m for m in ('aiosqlite', 'asyncpg', 'asyncmy') if m in sys.modules)\n"
        "print(upper, len(engines), drivers)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)

    assert proc.stdout.strip() == "[] 0 []"
