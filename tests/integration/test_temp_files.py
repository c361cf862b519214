"""A task's temporary outputs (``task_files.kind = 'temp'``) on every database: stored with the finish, and swept
(rows, then files) once the task ended longer ago than the age limit; a fresh task's stay, and so do outputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from visionatrix.cli.serve import sweep_old_temps
from visionatrix.db.tables import Task
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.models import FileRecord
from visionatrix.queue.temp_files import delete_old_temps
from visionatrix.storage.files import TaskStorage

GRAPH = {"1": {"class_type": "Noop", "inputs": {}}}


def _record(kind: str, name: str) -> FileRecord:
    return FileRecord(kind=kind, name=name, node_id="1", size_bytes=3, sha256="c" * 64, param=None)


async def _finished(queue: TaskQueue, storage: TaskStorage, ended_ago_s: float) -> int:
    [task_id] = await queue.create("f", GRAPH, {})
    claim = await queue.claim_next("w", ["f"])
    assert claim is not None and claim.id == task_id
    (storage.temp_dir(task_id) / "prev.png").write_bytes(b"tmp")
    (storage.output_dir(task_id) / "out.png").write_bytes(b"out")
    await queue.mark_finished(task_id, claim.lease_token, timings={},
                              outputs=[_record("output", "out.png"), _record("temp", "prev.png")])
    async with queue.engine.begin() as conn:
        await conn.execute(update(Task).where(Task.id == task_id)
                           .values(finished_at=datetime.now(UTC) - timedelta(seconds=ended_ago_s)))
    return task_id


async def test_temp_rows_are_stored_and_old_ones_swept_with_their_files(queue: TaskQueue, tmp_path: Path):
    storage = TaskStorage(tmp_path / "files", max_upload_bytes=1000)
    old = await _finished(queue, storage, ended_ago_s=7200)
    fresh = await _finished(queue, storage, ended_ago_s=60)
    assert sorted(f.kind for f in (await queue.get(old)).files) == ["output", "temp"]

    assert await sweep_old_temps(queue, storage, max_age_s=3600) == 1
    assert [f.kind for f in (await queue.get(old)).files] == ["output"]
    assert not (storage.root / "temp" / str(old)).exists() and (storage.root / "output" / str(old)).is_dir()
    assert sorted(f.kind for f in (await queue.get(fresh)).files) == ["output", "temp"]
    assert (storage.root / "temp" / str(fresh) / "prev.png").is_file()
    assert await delete_old_temps(queue, finished_before=datetime.now(UTC) - timedelta(hours=1)) == []


async def test_a_file_of_an_unknown_kind_is_refused(queue: TaskQueue):
    [task_id] = await queue.create("f", GRAPH, {})
    claim = await queue.claim_next("w", ["f"])
    assert claim is not None
    with pytest.raises(ValueError, match="kind"):
        await queue.mark_finished(task_id, claim.lease_token, timings={}, outputs=[_record("scratch", "x.png")])
