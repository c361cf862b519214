"""The worker route for temporary outputs: ``PUT /vapi/worker/tasks/{id}/temps/{name}`` stores into
``temp/<id>/``, ``finish`` records what its ``temps`` names (kind ``temp``, kept out of the task's outputs) and
refuses a name that was not uploaded; the name rules and the lease apply as for outputs."""

from __future__ import annotations

from aiohttp.test_utils import TestClient
from yarl import URL

from tests.unit.server.test_worker_api import WORKER, _claimed, _post, _sha
from visionatrix.client import VixClient
from visionatrix.server.services import Services


async def _upload_temp(http: TestClient, task: dict, name: str, data: bytes, token: str | None = None):
    return await http.put(URL(f"{WORKER}/tasks/{task['id']}/temps/{name}", encoded=True), data=data,
                          headers={"X-Vix-Lease": token or task["lease_token"]})


async def test_an_uploaded_temp_file_is_recorded_as_a_preview_by_finish(
        http: TestClient, vix: VixClient, services: Services) -> None:
    task = await _claimed(http, vix)
    response = await _upload_temp(http, task, "sub/prev.png", b"preview")
    assert response.status == 201 and (await response.json())["sha256"] == _sha(b"preview")
    assert (services.storage.root / "temp" / str(task["id"]) / "sub" / "prev.png").read_bytes() == b"preview"
    assert not (services.storage.root / "output" / str(task["id"]) / "sub").exists()
    response = await _post(http, task, "finish", temps=[{"name": "sub/prev.png", "node_id": "4"}])
    assert response.status == 200, await response.text()
    view = await vix.get_task(task["id"])
    assert view["outputs"] == [] and [(f["name"], f["kind"], f["node_id"]) for f in view["previews"]] == [
        ("sub/prev.png", "temp", "4")]


async def test_finish_naming_a_temp_file_not_uploaded_is_400(http: TestClient, vix: VixClient) -> None:
    task = await _claimed(http, vix)
    response = await _post(http, task, "finish", temps=[{"name": "gone.png", "node_id": "4"}])
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "missing_outputs" and body["details"] == {"missing": ["temp gone.png"]}
    assert (await vix.get_task(task["id"]))["status"] == "running"


async def test_a_temp_upload_needs_a_good_name_and_the_lease(http: TestClient, vix: VixClient,
                                                             services: Services) -> None:
    task = await _claimed(http, vix)
    assert (await _upload_temp(http, task, "a/b/c.png", b"x")).status == 400
    assert (await _upload_temp(http, task, ".hidden.png", b"x")).status == 400
    assert (await _upload_temp(http, task, "ok.png", b"x", token="not-the-lease")).status == 409
    assert not (services.storage.root / "temp").exists() or not any((services.storage.root / "temp").rglob("*.png"))
