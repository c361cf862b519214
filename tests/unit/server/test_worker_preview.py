"""``POST /vapi/worker/tasks/{id}/preview``: a running node's preview goes to the task's followers (never stored),
only from the task's lease holder, only as an image within the size limit."""

from __future__ import annotations

import asyncio
import io

from aiohttp.test_utils import TestClient
from PIL import Image

from tests.unit.server.test_worker_api import WORKER, _claimed
from visionatrix.client import VixClient
from visionatrix.server.services import Services


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(out, format="JPEG")
    return out.getvalue()


async def test_a_preview_is_published_to_the_tasks_followers(http: TestClient, vix: VixClient,
                                                             services: Services) -> None:
    task = await _claimed(http, vix)
    async with services.events.subscribe() as subscription:
        response = await http.post(f"{WORKER}/tasks/{task['id']}/preview", data=_jpeg(),
                                   headers={"X-Vix-Lease": task["lease_token"], "X-Vix-Node": "5"})
        assert response.status == 204, await response.text()
        async with asyncio.timeout(5):
            async for event in subscription:
                if event["type"] == "task_preview":
                    break
    assert event["task_id"] == task["id"] and event["node_id"] == "5" and event["image"] == _jpeg()


async def test_bad_previews_are_refused(http: TestClient, vix: VixClient) -> None:
    task = await _claimed(http, vix)
    url = f"{WORKER}/tasks/{task['id']}/preview"
    lease = {"X-Vix-Lease": task["lease_token"], "X-Vix-Node": "5"}
    assert (await http.post(url, data=b"GIF89a not ours", headers=lease)).status == 400
    assert (await http.post(url, data=_jpeg(), headers={"X-Vix-Lease": task["lease_token"]})).status == 400
    assert (await http.post(url, data=_jpeg(), headers={**lease, "X-Vix-Lease": "stale"})).status == 409
    big = io.BytesIO(b"\xff\xd8\xff" + b"\0" * (4 * 1024 * 1024))
    assert (await http.post(url, data=big, headers=lease)).status == 413
