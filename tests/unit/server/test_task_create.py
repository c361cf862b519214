"""``POST /vapi/tasks``: uploads, parameters, validation, count/priority, and nothing left behind on failure."""

from __future__ import annotations

import io

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from PIL import Image

from tests.unit.server.conftest import MAX_UPLOAD_BYTES
from tests.unit.server.helpers import SAMPLE, staging_leftovers, task_folders
from tests.unit.server.test_flows_api import solid_flow
from visionatrix.client import VixClient, VixClientError
from visionatrix.server.services import Services


async def _no_tasks(services: Services) -> bool:
    return await services.queue.list() == []


async def test_a_task_with_an_uploaded_image_is_queued_with_its_input_in_place(vix: VixClient,
                                                                            services: Services) -> None:
    [task_id] = await vix.create_task("web_resize_sharpen", {"width": 320, "sharpness": "0.25"},
                                      files={"image": SAMPLE})
    task = await vix.get_task(task_id)
    assert task["status"] == "pending" and task["flow"] == "web_resize_sharpen" and task["progress"] == 0
    assert task["params"] == {"width": 320, "sharpness": "0.25"}
    [image] = task["inputs"]
    assert image["param"] == "image" and image["name"] == "image.jpg"
    assert image["size_bytes"] == SAMPLE.stat().st_size
    assert (services.storage.input_dir(task_id) / "image.jpg").read_bytes() == SAMPLE.read_bytes()
    stored = await services.queue.get(task_id)
    assert stored.graph["2"]["inputs"]["image"] == "image.jpg"
    assert stored.graph["3"]["inputs"]["value"] == 320
    assert staging_leftovers(services) == []


async def test_count_makes_that_many_tasks_each_with_its_own_input(vix: VixClient, services: Services) -> None:
    ids = await vix.create_task("web_resize_sharpen", files={"image": SAMPLE.read_bytes()}, count=3, priority=7)
    assert len(ids) == 3 and len(set(ids)) == 3
    for task_id in ids:
        task = await vix.get_task(task_id)
        assert task["priority"] == 7
        assert (services.storage.input_dir(task_id) / task["inputs"][0]["name"]).is_file()


async def test_parameters_may_be_sent_as_one_form_field_each(http: TestClient, services: Services) -> None:
    form = aiohttp.FormData()
    form.add_field("flow", "web_resize_sharpen")
    form.add_field("width", "256")
    form.add_field("image", SAMPLE.read_bytes(), filename="photo.JPG", content_type="image/jpeg")
    response = await http.post("/vapi/tasks", data=form)
    assert response.status == 201, await response.text()
    [task_id] = (await response.json())["task_ids"]
    task = await services.queue.get(task_id)
    assert task.params == {"width": "256"} and task.graph["3"]["inputs"]["value"] == 256


async def test_a_json_body_creates_a_task_of_a_flow_without_images(vix: VixClient, services: Services) -> None:
    await vix.upload_flow(solid_flow())
    ids = await vix.create_task("solid", {"width": 16, "mood": "loud"}, count=2)
    assert len(ids) == 2
    task = await services.queue.get(ids[0])
    assert task.graph["1"]["inputs"]["width"] == 16 and task.graph["3"]["inputs"]["filename_prefix"] == "loud"


async def test_an_unknown_flow_is_404_and_leaves_nothing(vix: VixClient, services: Services) -> None:
    with pytest.raises(VixClientError) as caught:
        await vix.create_task("no_such_flow", files={"image": SAMPLE})
    assert (caught.value.status, caught.value.error) == (404, "not_found")
    assert await _no_tasks(services) and staging_leftovers(services) == [] and task_folders(services) == []


async def test_every_parameter_problem_is_listed_at_once(vix: VixClient, services: Services) -> None:
    with pytest.raises(VixClientError) as caught:
        await vix.create_task("web_resize_sharpen", {"width": 99999, "sharpness": "sharp", "colour": "red"})
    error = caught.value
    assert (error.status, error.error) == (400, "invalid_params")
    assert error.details == {
        "colour": "unknown parameter",
        "image": "required parameter is missing",
        "width": "99999 is above the maximum 4096",
        "sharpness": "expected a number, got 'sharp'",
    }
    assert await _no_tasks(services)


async def test_a_file_that_is_not_an_image_is_refused_with_the_other_problems(vix: VixClient,
                                                                            services: Services) -> None:
    with pytest.raises(VixClientError) as caught:
        await vix.create_task("web_resize_sharpen", {"width": 1}, files={"image": b"not an image at all"})
    assert caught.value.error == "invalid_params"
    assert "not a readable image" in caught.value.details["image"]
    assert "below the minimum" in caught.value.details["width"]
    assert await _no_tasks(services) and staging_leftovers(services) == [] and task_folders(services) == []


async def test_an_image_with_too_many_pixels_is_refused(vix: VixClient, services: Services) -> None:
    buffer = io.BytesIO()
    Image.new("L", (1200, 1000)).save(buffer, format="PNG")  # 1.2 MP > the 1 MP limit, few bytes
    with pytest.raises(VixClientError) as caught:
        await vix.create_task("web_resize_sharpen", files={"image": buffer.getvalue()})
    assert caught.value.error == "invalid_params"
    assert "more than 1000000 pixels" in caught.value.details["image"]
    assert await _no_tasks(services) and staging_leftovers(services) == []


async def test_an_oversized_upload_is_413_and_leaves_nothing(vix: VixClient, services: Services) -> None:
    with pytest.raises(VixClientError) as caught:
        await vix.create_task("web_resize_sharpen", files={"image": b"\xff" * (MAX_UPLOAD_BYTES + 1)})
    assert (caught.value.status, caught.value.error) == (413, "too_large")
    assert caught.value.details["limit_bytes"] == MAX_UPLOAD_BYTES
    assert await _no_tasks(services) and staging_leftovers(services) == [] and task_folders(services) == []


async def test_a_graph_that_fails_validation_is_400_with_node_errors(vix: VixClient, services: Services) -> None:
    await vix.upload_flow(solid_flow())
    with pytest.raises(VixClientError) as caught:
        await vix.create_task("solid", {"width": 99999})  # the manifest allows it, EmptyImage does not
    error = caught.value
    assert (error.status, error.error) == (400, "invalid_graph")
    [problem] = error.details["node_errors"]["1"]["errors"]
    assert problem["extra_info"]["input_name"] == "width"
    assert error.details["node_errors"]["1"]["class_type"] == "EmptyImage"
    assert error.details["error"]["type"] == "prompt_outputs_failed_validation"
    assert await _no_tasks(services)


@pytest.mark.parametrize(
    ("body", "problems"),
    [
        ({"flow": "web_resize_sharpen", "count": 0}, {"count"}),
        ({"flow": "web_resize_sharpen", "count": 101, "priority": 101}, {"count", "priority"}),
        ({"flow": "web_resize_sharpen", "count": "many", "priority": -101}, {"count", "priority"}),
        ({"flow": "web_resize_sharpen", "count": True}, {"count"}),
        ({"params": {}}, {"flow"}),
        ({"flow": "web_resize_sharpen", "params": [1], "width": 5}, {"params", "width"}),
    ],
)
async def test_malformed_requests_are_400_naming_each_field(http: TestClient, services: Services, body: dict,
                                                           problems: set[str]) -> None:
    response = await http.post("/vapi/tasks", json=body)
    assert response.status == 400
    answer = await response.json()
    assert answer["error"] == "invalid_request" and set(answer["details"]) == problems
    assert await _no_tasks(services)


async def test_count_and_priority_are_checked_in_multipart_forms_too(http: TestClient, services: Services) -> None:
    form = aiohttp.FormData()
    form.add_field("flow", "web_resize_sharpen")
    form.add_field("count", "500")
    form.add_field("params", "{not json")
    form.add_field("image", SAMPLE.read_bytes(), filename="a.jpg")
    response = await http.post("/vapi/tasks", data=form)
    assert response.status == 400
    answer = await response.json()
    assert set(answer["details"]) == {"count", "params"} and "not valid JSON" in answer["details"]["params"]
    assert await _no_tasks(services) and staging_leftovers(services) == []


async def test_a_parameter_given_twice_is_refused(http: TestClient, services: Services) -> None:
    form = aiohttp.FormData()
    form.add_field("flow", "web_resize_sharpen")
    form.add_field("params", '{"width": 300}')
    form.add_field("width", "400")
    form.add_field("image", SAMPLE.read_bytes(), filename="a.jpg")
    form.add_field("image", SAMPLE.read_bytes(), filename="b.jpg")
    response = await http.post("/vapi/tasks", data=form)
    assert response.status == 400
    details = (await response.json())["details"]
    assert details == {"width": "given both in 'params' and as a form field", "image": "given more than once"}
    assert await _no_tasks(services) and staging_leftovers(services) == []


async def test_malformed_json_is_400_naming_the_problem(http: TestClient) -> None:
    response = await http.post("/vapi/tasks", data=b'{"flow": web}', headers={"Content-Type": "application/json"})
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "invalid_json" and "Expecting value at line 1 column 10" in body["message"]


async def test_a_broken_multipart_body_is_400(http: TestClient, services: Services) -> None:
    response = await http.post("/vapi/tasks", data=b"--xyz\r\nno headers end",
                               headers={"Content-Type": "multipart/form-data; boundary=abc"})
    assert response.status == 400
    assert (await response.json())["error"] == "invalid_multipart"
    assert await _no_tasks(services) and staging_leftovers(services) == []


async def test_a_failed_create_leaves_no_row_and_no_file(vix: VixClient, services: Services) -> None:
    [second] = await vix.create_task("web_resize_sharpen", files={"image": SAMPLE})
    # The next two tasks will get ids second+1 and second+2; a plain file where the second one's input folder
    # goes makes placing its inputs fail after the first task's inputs were placed and both rows were inserted.
    obstacle = services.storage.root / "input" / str(second + 2)
    obstacle.write_text("in the way")
    with pytest.raises(VixClientError) as caught:
        await vix.create_task("web_resize_sharpen", files={"image": SAMPLE}, count=2)
    assert (caught.value.status, caught.value.error) == (500, "internal_error")
    assert caught.value.message == "internal server error" and caught.value.details is None
    assert [task.id for task in await services.queue.list()] == [second]
    assert not (services.storage.root / "input" / str(second + 1)).exists()
    assert staging_leftovers(services) == []
    obstacle.unlink()
    assert task_folders(services) == [services.storage.input_dir(second)]


async def test_a_big_flow_is_bound_and_validated_off_the_event_loop_with_the_same_result(
        vix: VixClient, services: Services) -> None:
    from visionatrix.server.task_create import INLINE_NODES

    flow = solid_flow("long_chain")
    graph = flow["graph"]
    previous = "1"
    for index in range(INLINE_NODES + 5):
        node_id = str(100 + index)
        graph[node_id] = {"class_type": "ImageInvert", "inputs": {"image": [previous, 0]}}
        previous = node_id
    graph["3"]["inputs"]["images"] = [previous, 0]
    services.flows.add(flow)
    [task_id] = await vix.create_task("long_chain", {"width": 16, "mood": "loud"})
    stored = await services.queue.get(task_id)
    assert len(stored.graph) == len(graph) and stored.graph["1"]["inputs"]["width"] == 16
    assert stored.graph["3"]["inputs"]["filename_prefix"] == "loud"
    with pytest.raises(VixClientError) as refused:
        await vix.create_task("long_chain", {"width": -5})
    assert refused.value.status == 400
