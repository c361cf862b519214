"""``WORKER_AUTH``: the worker routes require the credentials (Basic ``user:password`` or a Bearer token); every
other route stays open."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from visionatrix.server.app import create_app
from visionatrix.server.services import Services
from visionatrix.server.worker_auth import WorkerCredentials

CLAIM = {"worker_id": "w1", "installed_flows": ["web_resize_sharpen"], "wait_s": 0}


def _basic(credentials: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


async def _client(aiohttp_client: Any, services: Services, secret: str) -> TestClient:
    services.worker_auth = secret
    return await aiohttp_client(create_app(services))


async def _assert_refused(response: Any, scheme: str) -> None:
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == f'{scheme} realm="visionatrix workers"'
    body = await response.json()
    assert body["error"] == "unauthorized" and set(body) == {"error", "message", "details"}


async def test_basic_credentials_are_required_on_worker_routes(aiohttp_client: Any, services: Services) -> None:
    client = await _client(aiohttp_client, services, "vix:s3cret")
    await _assert_refused(await client.post("/vapi/worker/claim", json=CLAIM), "Basic")
    await _assert_refused(await client.post("/vapi/worker/claim", json=CLAIM, headers=_basic("vix:wrong")), "Basic")
    await _assert_refused(await client.post("/vapi/worker/claim", json=CLAIM, headers=_basic("vix:s3cret!")),
                          "Basic")
    await _assert_refused(await client.post("/vapi/worker/claim", json=CLAIM,
                                            headers={"Authorization": "Bearer vix:s3cret"}), "Basic")
    response = await client.post("/vapi/worker/claim", json=CLAIM, headers=_basic("vix:s3cret"))
    assert response.status == 200 and await response.json() == {"task": None}


async def test_a_token_is_sent_as_a_bearer(aiohttp_client: Any, services: Services) -> None:
    client = await _client(aiohttp_client, services, "t0ken-abc")
    await _assert_refused(await client.post("/vapi/worker/claim", json=CLAIM), "Bearer")
    await _assert_refused(await client.post("/vapi/worker/claim", json=CLAIM,
                                            headers={"Authorization": "Bearer t0ken-abd"}), "Bearer")
    await _assert_refused(await client.post("/vapi/worker/claim", json=CLAIM, headers=_basic("t0ken-abc")),
                          "Bearer")
    response = await client.post("/vapi/worker/claim", json=CLAIM, headers={"Authorization": "Bearer t0ken-abc"})
    assert response.status == 200


async def test_every_worker_route_requires_the_credentials(aiohttp_client: Any, services: Services) -> None:
    client = await _client(aiohttp_client, services, "vix:s3cret")
    worker_routes = [(route.method, route.resource.canonical) for route in client.app.router.routes()
                     if route.resource is not None and route.resource.canonical.startswith("/vapi/worker/")
                     and route.method != "HEAD"]
    assert len(worker_routes) == 13  # the temps upload and the start report included
    for method, template in worker_routes:
        path = template.replace("{task_id}", "1").replace("{name}", "a.png").replace("{worker_id}", "w1")
        response = await client.request(method, path, json={})
        assert response.status == 401, (method, path)


async def test_other_routes_stay_open(aiohttp_client: Any, services: Services) -> None:
    client = await _client(aiohttp_client, services, "vix:s3cret")
    assert (await client.get("/vapi/tasks")).status == 200
    assert (await client.get("/vapi/workers")).status == 200
    response = await client.put("/vapi/workers/nobody/allowed_flows", json={"flows": None})
    assert response.status == 404


@pytest.mark.parametrize("path", ["/vapi/worker/nothing", "/vapi/worker%2Fclaim", "/vapi/worker/tasks/1/x"])
async def test_unknown_or_disguised_worker_paths_are_refused_too(aiohttp_client: Any, services: Services,
                                                                 path: str) -> None:
    client = await _client(aiohttp_client, services, "vix:s3cret")
    response = await client.post(URL(path, encoded=True), json=CLAIM)
    assert response.status == 401


@pytest.mark.parametrize(
    ("header", "accepted"),
    [
        ("Basic dml4OnMzY3JldA==", True),
        ("basic   dml4OnMzY3JldA==  ", True),
        ("Basic dml4OnMzY3JldA", False),  # bad padding
        ("Basic !!!", False),
        ("Basic", False),
        ("", False),
        ("Digest dml4OnMzY3JldA==", False),
    ],
)
def test_basic_credentials_are_parsed_strictly(header: str, accepted: bool) -> None:
    assert WorkerCredentials("vix:s3cret").accepts(header) is accepted


def test_empty_credentials_are_refused() -> None:
    with pytest.raises(ValueError, match="empty"):
        WorkerCredentials("")
