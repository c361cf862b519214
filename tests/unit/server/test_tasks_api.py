"""Tasks after creation: list, show, cancel, restart, delete, download their files; workers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from tests.unit.server.helpers import SAMPLE, finish_with_output
from tests.unit.server.test_flows_api import solid_flow
from visionatrix.client import VixClient, VixClientError
from visionatrix.queue.models import WorkerRecord
from visionatrix.server import views
from visionatrix.server.services import Services


async def _web_task(vix: VixClient, **kwargs: object) -> int:
    [task_id] = await vix.create_task("web_resize_sharpen", files={"image": SAMPLE}, **kwargs)  # type: ignore[arg-type]
    return task_id


async def test_tasks_are_listed_newest_first_and_filtered(vix: VixClient, services: Services) -> None:
    await vix.upload_flow(solid_flow())
    first = await _web_task(vix)
    [second] = await vix.create_task("solid")
    third = await _web_task(vix)
    await vix.cancel_task(third)
    assert [t["id"] for t in await vix.list_tasks()] == [third, second, first]
    assert [t["id"] for t in await vix.list_tasks(flow="web_resize_sharpen")] == [third, first]
    assert [t["id"] for t in await vix.list_tasks(status="cancelled")] == [third]
    assert [t["id"] for t in await vix.list_tasks(status="pending", flow="solid")] == [second]
    assert [t["id"] for t in await vix.list_tasks(limit=1, offset=1)] == [second]


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("status=done", {"status"}),
        ("limit=0", {"limit"}),
        ("limit=501", {"limit"}),
        ("limit=ten&offset=-1", {"limit", "offset"}),
        ("colour=red", {"colour"}),
    ],
)
async def test_bad_list_filters_are_400(http: TestClient, query: str, fields: set[str]) -> None:
    response = await http.get(f"/vapi/tasks?{query}")
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "invalid_query" and set(body["details"]) == fields


@pytest.mark.parametrize("action", ["get_task", "cancel_task", "restart_task", "delete_task"])
async def test_unknown_task_ids_are_404(vix: VixClient, action: str) -> None:
    with pytest.raises(VixClientError) as caught:
        await getattr(vix, action)(424242)
    assert (caught.value.status, caught.value.error) == (404, "not_found")


async def test_an_id_too_large_for_the_database_is_404(http: TestClient) -> None:
    response = await http.get(f"/vapi/tasks/{2**70}")
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


async def test_cancel_and_restart_a_pending_task(vix: VixClient) -> None:
    task_id = await _web_task(vix)
    cancelled = await vix.cancel_task(task_id)
    assert cancelled["status"] == "cancelled"
    with pytest.raises(VixClientError) as caught:
        await vix.cancel_task(task_id)
    assert (caught.value.status, caught.value.error) == (409, "conflict")
    restarted = await vix.restart_task(task_id)
    assert restarted["status"] == "pending" and restarted["error"] is None
    with pytest.raises(VixClientError) as caught:
        await vix.restart_task(task_id)
    assert caught.value.status == 409


async def test_a_finished_task_shows_outputs_that_download(vix: VixClient, services: Services,
                                                           tmp_path: Path) -> None:
    task_id = await _web_task(vix)
    record = await finish_with_output(services, task_id, content=b"\x89PNG pretend", name="web_00001_.png")
    task = await vix.get_task(task_id)
    assert task["status"] == "finished" and task["progress"] == 100
    assert task["worker_id"] == "test-worker" and task["timings"] == {"7": 0.25}
    assert task["started_at"] is not None and task["finished_at"] is not None
    [output] = task["outputs"]
    assert output["url"] == f"/vapi/tasks/{task_id}/files/output/web_00001_.png"
    assert output["sha256"] == record.sha256 and output["node_id"] == "7"
    saved = await vix.download(output, f"{tmp_path / 'results'}/")
    assert saved == tmp_path / "results" / "web_00001_.png" and saved.read_bytes() == b"\x89PNG pretend"
    other = await vix.download(task["inputs"][0]["url"], tmp_path / "input_copy.jpg")
    assert other.read_bytes() == SAMPLE.read_bytes()
    assert list(tmp_path.rglob("*.part")) == []


async def test_cancelling_a_finished_task_is_409(vix: VixClient, services: Services) -> None:
    task_id = await _web_task(vix)
    await finish_with_output(services, task_id)
    with pytest.raises(VixClientError) as caught:
        await vix.cancel_task(task_id)
    assert (caught.value.status, caught.value.error) == (409, "conflict")
    assert (await vix.get_task(task_id))["status"] == "finished"


async def test_a_running_task_cannot_be_deleted_until_cancelled(vix: VixClient, services: Services) -> None:
    task_id = await _web_task(vix)
    claimed = await services.queue.claim_next("w1", ["web_resize_sharpen"])
    assert claimed is not None and claimed.id == task_id
    await services.queue.mark_started(task_id, claimed.lease_token)
    with pytest.raises(VixClientError) as caught:
        await vix.delete_task(task_id)
    assert (caught.value.status, caught.value.error) == (409, "conflict")
    task = await vix.cancel_task(task_id)
    assert task["status"] == "running" and task["cancel_requested"] is True
    await services.queue.mark_cancelled(task_id, claimed.lease_token)
    await vix.delete_task(task_id)
    with pytest.raises(VixClientError):
        await vix.get_task(task_id)


async def test_deleting_a_task_removes_its_rows_and_files(vix: VixClient, services: Services) -> None:
    task_id = await _web_task(vix)
    await finish_with_output(services, task_id)
    input_dir = services.storage.root / "input" / str(task_id)
    output_dir = services.storage.root / "output" / str(task_id)
    assert input_dir.is_dir() and output_dir.is_dir()
    await vix.delete_task(task_id)
    assert not input_dir.exists() and not output_dir.exists()
    assert await vix.list_tasks() == []


async def test_a_failed_task_shows_its_error_without_the_traceback(vix: VixClient, services: Services) -> None:
    task_id = await _web_task(vix)
    claimed = await services.queue.claim_next("w1", ["web_resize_sharpen"])
    assert claimed is not None
    await services.queue.mark_failed(task_id, claimed.lease_token, node_id="6", class_type="ImageSharpen",
                                     message="out of memory", traceback="Traceback (most recent call last): ...")
    task = await vix.get_task(task_id)
    assert task["status"] == "failed"
    assert task["error"] == {"node_id": "6", "class_type": "ImageSharpen", "message": "out of memory"}
    assert (await vix.restart_task(task_id))["status"] == "pending"


async def test_a_restarted_task_keeps_its_inputs_but_not_the_outputs_of_the_earlier_run(
        vix: VixClient, services: Services) -> None:
    task_id = await _web_task(vix)
    claimed = await services.queue.claim_next("w1", ["web_resize_sharpen"])
    assert claimed is not None
    (services.storage.output_dir(task_id) / "web_00001_.png").write_bytes(b"half written")
    await services.queue.mark_failed(task_id, claimed.lease_token, node_id="7", class_type="SaveImage",
                                     message="disk full", traceback="")
    restarted = await vix.restart_task(task_id)
    assert restarted["status"] == "pending" and restarted["outputs"] == [] and len(restarted["inputs"]) == 1
    assert services.storage.describe_outputs(task_id) == []
    assert (services.storage.input_dir(task_id) / "image.jpg").is_file()


@pytest.mark.parametrize(
    "path",
    [
        "output/..%2F..%2Finput%2F{id}%2Fimage.jpg",
        "output/../../../vix.db",
        "output/%2E%2E/%2E%2E/vix.db",
        "output/%2Fetc%2Fpasswd",
        "input/..%2F{id}%2Fimage.jpg",
        "input/.hidden",
        "secrets/image.jpg",
        "output/missing.png",
    ],
)
async def test_the_download_route_never_leaves_the_task_folder(http: TestClient, vix: VixClient,
                                                               services: Services, path: str) -> None:
    task_id = await _web_task(vix)
    (services.storage.input_dir(task_id) / ".hidden").write_text("secret")
    response = await http.get(f"/vapi/tasks/{task_id}/files/" + path.format(id=task_id))
    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


async def test_a_file_of_an_unknown_task_is_404(http: TestClient) -> None:
    response = await http.get("/vapi/tasks/999/files/input/image.jpg")
    assert response.status == 404
    assert (await response.json())["details"] == {"kind": "task", "id": "999"}


async def test_workers_are_listed_with_what_they_run(vix: VixClient, services: Services) -> None:
    assert await vix.list_workers() == []
    seen = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    await services.queue.upsert_worker(WorkerRecord(worker_id="gpu-1", mode="DEFAULT", device="cuda:0",
                                                    installed_flows=["web_resize_sharpen"], current_task_id=None,
                                                    last_seen_at=seen))
    [worker] = await vix.list_workers()
    assert worker["worker_id"] == "gpu-1" and worker["device"] == "cuda:0" and worker["mode"] == "DEFAULT"
    assert worker["installed_flows"] == ["web_resize_sharpen"] and worker["current_task_id"] is None
    assert datetime.fromisoformat(worker["last_seen_at"]) == seen
    assert worker["flows"] == ["web_resize_sharpen"] and worker["resources"] is None


def test_a_worker_is_idle_busy_or_offline() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)

    def state(seconds_ago: float, task: int | None = None, stopped: bool = False) -> str:
        return views.worker_state(WorkerRecord(
            worker_id="w", mode="DEFAULT", device="cpu", installed_flows=[], current_task_id=task,
            last_seen_at=now - timedelta(seconds=seconds_ago), stopped_at=now if stopped else None), now)

    assert state(1) == "idle" and state(1, task=7) == "busy"
    assert state(views.OFFLINE_AFTER_S + 1, task=7) == "offline"
    assert state(0, stopped=True) == "offline"


async def test_the_client_restricts_and_frees_a_worker(vix: VixClient, services: Services) -> None:
    await services.queue.upsert_worker(WorkerRecord(worker_id="gpu/2", mode="WORKER_HTTP", device="cpu",
                                                    installed_flows=["a", "b"], current_task_id=None,
                                                    last_seen_at=datetime.now(UTC)))
    assert (await vix.set_worker_flows("gpu/2", ["b"]))["allowed_flows"] == ["b"]
    [worker] = await vix.list_workers()
    assert worker["allowed_flows"] == ["b"] and worker["flows"] == ["b"] and worker["state"] == "idle"
    assert (await vix.set_worker_flows("gpu/2", None))["allowed_flows"] is None
