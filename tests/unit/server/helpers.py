"""Helpers for the API tests: drive the queue like a worker, and look for files left behind."""

from __future__ import annotations

import hashlib
from pathlib import Path

from visionatrix.queue.models import FileRecord
from visionatrix.server.services import Services

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "flows" / "examples" / "sample.jpg"


async def finish_with_output(services: Services, task_id: int, content: bytes = b"result bytes",
                             name: str = "web_00001_.png") -> FileRecord:
    """Drive the queue like a worker would: claim the task, write an output file, mark it finished."""
    claimed = await services.queue.claim_next("test-worker", [await _flow_of(services, task_id)])
    assert claimed is not None and claimed.id == task_id
    await services.queue.mark_started(task_id, claimed.lease_token)
    path = services.storage.output_dir(task_id) / name
    path.write_bytes(content)
    record = FileRecord(kind="output", name=name, node_id="7", size_bytes=len(content),
                        sha256=hashlib.sha256(content).hexdigest(), param=None)
    await services.queue.mark_finished(task_id, claimed.lease_token, timings={"7": 0.25}, outputs=[record])
    return record


async def _flow_of(services: Services, task_id: int) -> str:
    return (await services.queue.get(task_id)).flow


def staging_leftovers(services: Services) -> list[Path]:
    staging = services.storage.root / "staging"
    return sorted(staging.rglob("*")) if staging.exists() else []


def task_folders(services: Services) -> list[Path]:
    return sorted(p for kind in ("input", "output") if (services.storage.root / kind).exists()
                  for p in (services.storage.root / kind).iterdir())
