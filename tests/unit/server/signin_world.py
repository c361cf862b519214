"""A server with sign-in on and the people the sign-in tests need: users A (``alice``) and B (``bob``), an admin
(``root``), a disabled user (``carol``), worker tokens, API tokens (live, spare, revoked), and A's and B's tasks and
ComfyUI prompts (finished with an output file, or pending). Every credential is real: made by the store or by
signing in over HTTP; nothing is patched."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from tests.unit.server.comfy.test_comfy_prompts import solid_prompt
from tests.unit.server.helpers import SAMPLE, finish_with_output
from visionatrix.auth.store import AuthStore, UserRecord
from visionatrix.security_config import SecuritySettings
from visionatrix.server.app import create_app
from visionatrix.server.services import Services
from visionatrix.server.signin import SESSION_COOKIE, SIGNIN
from visionatrix.server.signin_limits import FailureLimiter

PASSWORDS = {"alice": "alice-pass-0001", "bob": "bob-pass-00002", "root": "root-pass-000003",
             "carol": "carol-pass-0000004"}
WORKER_AUTH = "worker-auth-secret-000005"
FLOW = "web_resize_sharpen"
OUTPUT = "web_00001_.png"


def basic(name: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{password}".encode()).decode()}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def cookie(secret: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={secret}"}


@dataclass
class World:
    client: TestClient
    services: Services
    store: AuthStore
    users: dict[str, UserRecord] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    """Every secret made here (sessions, tokens), by name: none may ever show up in a log or a reply."""
    token_ids: dict[str, int] = field(default_factory=dict)
    tasks: dict[str, int] = field(default_factory=dict)
    """``alice``/``bob``: each one's ``/vapi/tasks`` task (finished with ``OUTPUT`` when asked, else pending)."""
    prompts: dict[str, str] = field(default_factory=dict)
    """``alice``/``bob``: each one's ComfyUI prompt id (finished with an output when asked, else pending)."""
    prompt_tasks: dict[str, int] = field(default_factory=dict)

    def headers(self, caller: str) -> dict[str, str]:
        """The ``Authorization``/``Cookie`` header of a caller of the access matrix (``CALLERS``)."""
        if caller == "anonymous":
            return {}
        if caller == "alice_basic":
            return basic("alice", PASSWORDS["alice"])
        if caller in ("alice_session", "bob_session", "root_session"):
            return cookie(self.secrets[caller])
        return bearer(self.secrets[caller])

    async def login(self, name: str, password: str | None = None, **headers: str) -> str:
        response = await self.client.post("/vapi/auth/login", headers=headers,
                                          json={"name": name, "password": password or PASSWORDS[name]})
        assert response.status == 200, await response.text()
        return response.cookies[SESSION_COOKIE].value

    async def create_task(self, headers: dict[str, str]) -> aiohttp.ClientResponse:
        form = aiohttp.FormData()
        form.add_field("flow", FLOW)
        form.add_field("params", json.dumps({}), content_type="application/json")
        form.add_field("image", SAMPLE.read_bytes(), filename="sample.jpg", content_type="image/jpeg")
        return await self.client.post("/vapi/tasks", data=form, headers=headers)

    async def create_prompt(self, headers: dict[str, str], client_id: str | None = None) -> aiohttp.ClientResponse:
        body: dict[str, Any] = {"prompt": solid_prompt()}
        if client_id is not None:
            body["client_id"] = client_id
        return await self.client.post("/prompt", json=body, headers=headers)


CALLERS = ("anonymous", "alice_session", "alice_basic", "alice_api", "bob_api", "root_session", "worker",
           "worker_auth", "worker_revoked", "alice_api_revoked", "carol_api")
"""Who calls: nobody; user A by session cookie, Basic and API token; user B; an admin; a worker token and
``WORKER_AUTH``; a revoked worker token; A's revoked API token; a disabled user's API token."""


async def make_world(aiohttp_client: Any, services: Services, *, max_pending_per_user: int = 1000,
                     finished: tuple[str, ...] = ("alice", "bob")) -> World:
    services.security = SecuritySettings(auth="on", max_pending_per_user=max_pending_per_user)
    services.worker_auth = WORKER_AUTH
    app = create_app(services)
    client = await aiohttp_client(app, cookie_jar=aiohttp.DummyCookieJar())
    world = World(client=client, services=services, store=app[SIGNIN].store)
    store = world.store
    for name, password in PASSWORDS.items():
        world.users[name] = await store.create_user(name, password, admin=name == "root")
    for name in ("alice", "bob", "root"):
        world.secrets[f"{name}_session"] = await world.login(name)
    for label, user in (("alice_api", "alice"), ("alice_api_spare", "alice"), ("alice_api_revoked", "alice"),
                        ("bob_api", "bob")):
        secret, token = await store.issue("api", label, user_id=world.users[user].id)
        world.secrets[label], world.token_ids[label] = secret, token.id
    for label in ("worker", "worker_spare", "worker_revoked"):
        secret, token = await store.issue("worker", label)
        world.secrets[label], world.token_ids[label] = secret, token.id
    world.secrets["worker_auth"] = WORKER_AUTH
    await store.revoke(world.token_ids["alice_api_revoked"], kind="api")
    await store.revoke(world.token_ids["worker_revoked"], kind="worker")
    await store.set_disabled("carol")
    secret, token = await store.issue("api", "after disabling", user_id=world.users["carol"].id)
    world.secrets["carol_api"], world.token_ids["carol_api"] = secret, token.id
    for name in ("alice", "bob"):
        headers = bearer(world.secrets[f"{name}_api"])
        response = await world.create_task(headers)
        assert response.status == 201, await response.text()
        [world.tasks[name]] = (await response.json())["task_ids"]
        if name in finished:
            await finish_with_output(services, world.tasks[name], name=OUTPUT)
        response = await world.create_prompt(headers, client_id=f"{name}-client")
        assert response.status == 200, await response.text()
        world.prompts[name] = (await response.json())["prompt_id"]
        prompt = await services.prompts.get(world.prompts[name])  # type: ignore[union-attr]
        assert prompt is not None
        world.prompt_tasks[name] = prompt.task.id
        if name in finished:
            await finish_with_output(services, prompt.task.id, name="solid_00001_.png")
    return world


def lenient_limiter(world: World) -> None:
    """No failure limit: the access matrix makes many failed sign-ins on purpose (the limit has its own tests)."""
    world.client.app[SIGNIN].limiter = FailureLimiter(per_address=10**9, per_user=10**9)  # type: ignore[index]
