"""A third-party ComfyUI API client from PyPI (comfy-api-simplified) against a real ``python -m visionatrix run``:
it queues a prompt, follows it on the WebSocket, reads the history and downloads the image — unchanged, with our
queue and in-process worker behind the API."""

from __future__ import annotations

import io
from pathlib import Path

from comfy_api_simplified import ComfyApiWrapper, ComfyWorkflowWrapper
from PIL import Image

from tests.e2e.service import running_service

PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 24, "height": 16, "batch_size": 1, "color": 0xFF0000},
          "_meta": {"title": "canvas"}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "client"},
          "_meta": {"title": "Save"}},
}


def test_comfy_api_simplified_queues_a_prompt_and_gets_its_image(tmp_path: Path) -> None:
    workflow_file = tmp_path / "workflow_api.json"
    workflow_file.write_text(__import__("json").dumps(PROMPT))
    with running_service(tmp_path) as service:
        api = ComfyApiWrapper(service.url)
        workflow = ComfyWorkflowWrapper(str(workflow_file))
        workflow.set_node_param("canvas", "width", 32)
        images = api.queue_and_wait_images(workflow, "Save")
        [(name, data)] = images.items()
        assert name.endswith(".png")
        with Image.open(io.BytesIO(data)) as image:
            assert image.size == (32, 16)
            assert image.convert("RGB").getpixel((0, 0)) == (255, 0, 0)
        queue = api.get_queue()
        assert queue == {"queue_running": [], "queue_pending": [], "queue_pending_total": 0}
        assert "EmptyImage" in api.get_object_info()
