"""Tasks created together (``count``) share one stored copy of each upload: hard links to one file, each task
keeping its own name for it, so deleting one task leaves the others' inputs whole."""

from __future__ import annotations

import hashlib
import os

from aiohttp.test_utils import TestClient

from tests.unit.server.helpers import SAMPLE, staging_leftovers
from visionatrix.client import VixClient
from visionatrix.server.services import Services


async def test_count_tasks_share_one_stored_copy_of_the_upload(vix: VixClient, http: TestClient,
                                                               services: Services) -> None:
    content = SAMPLE.read_bytes()
    ids = await vix.create_task("web_resize_sharpen", files={"image": content}, count=5)
    assert len(ids) == 5
    name = (await vix.get_task(ids[0]))["inputs"][0]["name"]
    paths = [services.storage.input_dir(task_id) / name for task_id in ids]
    stats = [os.stat(path) for path in paths]
    assert len({(s.st_dev, s.st_ino) for s in stats}) == 1  # one inode on disk
    assert stats[0].st_nlink == 5  # the staging copy is gone; only the five tasks' names remain
    assert staging_leftovers(services) == []
    for task_id in ids:
        [row] = (await vix.get_task(task_id))["inputs"]
        assert row["size_bytes"] == len(content) and row["sha256"] == hashlib.sha256(content).hexdigest()

    await vix.delete_task(ids[0])
    assert not paths[0].exists() and os.stat(paths[1]).st_nlink == 4
    for task_id in ids[1:]:
        response = await http.get(f"/vapi/tasks/{task_id}/files/input/{name}")
        assert response.status == 200 and await response.read() == content
