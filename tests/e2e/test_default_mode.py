"""The DEFAULT mode end to end: a real service process, the public client, real files."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

from PIL import Image

from tests.e2e.service import ROOT, Service, running_service
from visionatrix.client import VixClient

SAMPLE = ROOT / "flows" / "examples" / "sample.jpg"


async def test_a_task_runs_in_the_default_mode_and_its_output_downloads(tmp_path):
    with running_service(tmp_path) as service:
        async with VixClient(service.url) as client:
            assert (await client.health())["status"] == "ok"
            names = [flow["name"] for flow in await client.list_flows()]
            assert "web_resize_sharpen" in names
            task_ids = await client.create_task("web_resize_sharpen", {"width": 200}, files={"image": SAMPLE},
                                                count=2)
            assert len(task_ids) == 2
            for task_id in task_ids:
                task = await client.wait_for_task(task_id, timeout_s=60)
                assert task["status"] == "finished", task
                assert task["progress"] == 100
                (output,) = task["outputs"]
                path = await client.download(output, tmp_path / f"out-{task_id}.png")
                with Image.open(path) as image:
                    assert image.width == 200
            workers = await client.list_workers()
            assert workers and "web_resize_sharpen" in workers[0]["installed_flows"]
    assert (tmp_path / "visionatrix.db").exists()
    assert (tmp_path / "vix_tasks_files" / "output" / str(task_ids[0])).is_dir()


async def test_failed_node_is_reported_with_node_id_and_class(tmp_path):
    not_image_flow = {
        "1": {"class_type": "LoadImage", "inputs": {"image": ""}, "_meta": {"title": "input;Image;custom_id=image"}},
        "2": {"class_type": "ImageCrop", "inputs": {"image": ["1", 0], "width": 8, "height": 8, "x": 5000,
                                                     "y": 0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "crop"}},
    }
    with running_service(tmp_path) as service:
        async with VixClient(service.url) as client:
            await client.upload_flow({**not_image_flow}, name="crop_outside")
            (task_id,) = await client.create_task("crop_outside", files={"image": SAMPLE})
            task = await client.wait_for_task(task_id, timeout_s=60)
    assert task["status"] == "failed"
    assert task["error"]["node_id"] == "2"
    assert task["error"]["class_type"] == "ImageCrop"


def test_sigterm_puts_the_running_task_back_to_pending(tmp_path):
    service = Service(tmp_path, {"VIX_TASK_LEASE_S": "5"})
    try:
        service.wait_ready()
        slow = {
            "1": {"class_type": "LoadImage", "inputs": {"image": ""},
                  "_meta": {"title": "input;Image;custom_id=image"}},
            "2": {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "red"}},
            "3": {"class_type": "GrowMask", "inputs": {"mask": ["2", 0], "expand": 16000, "tapered_corners": True}},
            "4": {"class_type": "GrowMask", "inputs": {"mask": ["3", 0], "expand": -16000, "tapered_corners": True}},
            "5": {"class_type": "MaskToImage", "inputs": {"mask": ["4", 0]}},
            "6": {"class_type": "SaveImage", "inputs": {"images": ["5", 0], "filename_prefix": "slow"}},
        }

        async def start_task() -> int:
            async with VixClient(service.url) as client:
                await client.upload_flow(slow, name="slow_flow")
                (task_id,) = await client.create_task("slow_flow", files={"image": SAMPLE})
                for _ in range(200):
                    if (await client.get_task(task_id))["status"] == "running":
                        return task_id
                    await asyncio.sleep(0.05)
                raise AssertionError("the task never started")

        task_id = asyncio.run(start_task())
    finally:
        code = service.stop(signal.SIGTERM)
    assert code == 0, service.log()
    with sqlite3.connect(tmp_path / "visionatrix.db") as db:
        (status,) = db.execute("SELECT status FROM tasks WHERE id = ?", (task_id,)).fetchone()
    assert status == "pending", service.log()


def test_bad_settings_exit_2_naming_the_variable(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "visionatrix", "run"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "VIX_PORT": "not-a-port"})
    assert proc.returncode == 2
    assert "VIX_PORT" in proc.stderr and "Traceback" not in proc.stderr
    assert not Path(tmp_path / "visionatrix.db").exists()


def test_an_unreachable_database_exits_2_naming_database_uri(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "visionatrix", "run", "--database-uri",
                           "postgresql+asyncpg://nobody@127.0.0.1:1/none"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert "DATABASE_URI" in proc.stderr and "Traceback" not in proc.stderr


async def test_server_mode_queues_tasks_without_running_them(tmp_path):
    with running_service(tmp_path, {"VIX_MODE": "SERVER"}) as service:
        async with VixClient(service.url) as client:
            (task_id,) = await client.create_task("web_resize_sharpen", {"width": 64}, files={"image": SAMPLE})
            await asyncio.sleep(1.0)
            assert (await client.get_task(task_id))["status"] == "pending"
            assert await client.list_workers() == []
    assert "(SERVER)" in service.log()
