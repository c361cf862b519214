"""A small async client for the Visionatrix REST API (``/vapi``); see ``docs/client.md``.

```python
async with VixClient("http://127.0.0.1:8288") as vix:
    [task_id] = await vix.create_task("web_resize_sharpen", {"width": 640}, files={"image": "photo.jpg"})
    task = await vix.wait_for_task(task_id, timeout_s=120)
    for output in task["outputs"]:
        await vix.download(output, "results/")
```
"""

from visionatrix.client.client import FINAL_STATUSES, VixClient
from visionatrix.client.errors import VixClientError

__all__ = ["FINAL_STATUSES", "VixClient", "VixClientError"]
