"""A Server-mode worker uploads a run's temporary outputs (PreviewImage's images) beside its outputs: the server
stores them as the task's files of kind ``temp`` under ``temp/<task id>/``, and the worker keeps no copy."""

from __future__ import annotations

import asyncio
import hashlib

from tests.integration.worker.conftest import running_server
from tests.integration.worker.test_http_worker import http_source, options
from visionatrix.queue.models import TaskStatus
from visionatrix.queue.prompts import Prompt
from visionatrix.worker.daemon import Worker


async def test_a_server_mode_worker_uploads_preview_images_as_temp_files(tmp_path, registry, executor):
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
             "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
             "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "p"}}}
    async with running_server(tmp_path, registry) as server, http_source(server.url, tmp_path / "w") as source:
        services = server.services
        assert services.prompts is not None
        task_id = await services.prompts.create(Prompt(
            prompt_id="0b7e1c1e-4f61-4a43-9d0a-3f3c2b0e5d11", graph=graph,
            node_types=frozenset({"EmptyImage", "PreviewImage", "SaveImage"})))
        assert await Worker(source, executor, options(installed_flows=[])).run(asyncio.Event(), burst=True) == 1
        task = await services.queue.get(task_id)
        assert task.status == TaskStatus.FINISHED
        assert [(f.name, f.node_id) for f in task.files if f.kind == "output"] == [("p_00001_.png", "3")]
        [temp] = [f for f in task.files if f.kind == "temp"]
        assert temp.node_id == "2" and temp.name.startswith("ComfyUI_temp_") and temp.name.endswith("_00001_.png")
        stored = services.storage.resolve(task_id, "temp", temp.name).read_bytes()
        assert hashlib.sha256(stored).hexdigest() == temp.sha256
        assert not (services.storage.root / "output" / str(task_id) / ".temp").exists()
        assert list((tmp_path / "w").iterdir()) == []
