"""Who may call what, over every route the app registers: each route is called by each kind of caller (nobody,
user A by session, Basic and API token, user B, an admin, a worker token, ``WORKER_AUTH``, revoked tokens, a
disabled user) with its path filled with real ids, and the answer must be the one ``access.POLICY`` states — 401
without valid credentials, 403 for a user on an admin route, worker routes only for worker credentials — and, on
the routes of one task or prompt, 404 for the user it does not belong to.

"ok" below means the sign-in layer let the call through (not 401/403; on an owner's route also not 404): the
bodies sent are the cheapest the handler accepts or, where that would take real work, one it rejects with 400 —
this test judges the access decision, not the handler."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web

from tests.unit.server.signin_world import CALLERS, FLOW, OUTPUT, World, lenient_limiter, make_world
from visionatrix.server import access
from visionatrix.server.services import Services

IDENTITY_OF = {"anonymous": "anonymous", "alice_session": "alice", "alice_basic": "alice", "alice_api": "alice",
               "bob_api": "bob", "root_session": "admin", "worker": "worker", "worker_auth": "worker",
               "worker_revoked": "refused", "alice_api_revoked": "refused", "carol_api": "refused"}
"""What each caller of ``CALLERS`` is to the server: a user, the admin, a worker, or refused credentials."""
OWNED = ("{task_id}", "{prompt_id}", "{job_id}")
STREAMING = ("/vapi/events/stream",)
ORDER = {"GET": 0, "HEAD": 0, "PUT": 1, "PATCH": 1, "POST": 1, "DELETE": 2}
"""Reads first, then writes, deletions last (so a deletion does not turn a later call into a 404)."""


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    template: str
    """The route's ``access.POLICY`` key."""
    owner: str | None
    """Whose task or prompt the path names (``alice``/``bob``); None on a route of no one's task."""
    body: Any = None


def _template(route: web.AbstractRoute) -> str | None:
    """``access.template`` of a request matched to ``route`` (the function reads only the matched route)."""
    return access.template(SimpleNamespace(match_info=SimpleNamespace(route=route)))  # type: ignore[arg-type]


def _name(template: str, owner: str) -> str:
    if template.startswith("/vapi/flows"):
        return FLOW
    if template.startswith("/vapi/tasks/"):
        return OUTPUT
    if template.endswith("/inputs/{name}"):
        return "image.jpg"
    return "result.png"


def _params(world: World, route: web.AbstractRoute, template: str, owner: str) -> dict[str, str]:
    token = "worker_spare" if template.startswith("/vapi/worker_tokens") else "alice_api_spare"
    values = {"task_id": str(world.tasks[owner]), "prompt_id": world.prompts[owner], "job_id": world.prompts[owner],
              "token_id": str(world.token_ids[token]), "worker_id": "test-worker", "folder": "checkpoints",
              "node_class": "EmptyImage", "id": "sub1", "file": "notes.json", "dest": "moved.json",
              "path": "index.html", "kind": "output", "name": _name(template, owner)}
    info = route.resource.get_info()  # type: ignore[union-attr]
    names = [part.split("}")[0].split(":")[0] for part in info.get("formatter", "").split("{")[1:]]
    return {name: values[name] for name in names}


def _body(template: str, world: World) -> Any:
    bodies: dict[str, Any] = {
        "/vapi/worker/claim": {"worker_id": "w-matrix", "installed_flows": [], "wait_s": 0},
        "/vapi/worker/claim/withdraw": {"worker_id": "w-matrix", "claim_id": "c1"},
        "/vapi/auth/tokens": {"name": "from the matrix"},
        "/vapi/worker_tokens": {"name": "from the matrix"},
        "/jobs/cancel": {"job_ids": [world.prompts["alice"]]},
    }
    return bodies.get(template, {})


def calls(world: World) -> list[Call]:
    """One call per registered route (two on a route of one task: A's and B's), reads first, logout last."""
    found: list[Call] = []
    for route in world.client.app.router.routes():  # type: ignore[union-attr]
        template = _template(route)
        assert template is not None
        owned = template == "/view" or (any(part in template for part in OWNED)
                                        and not template.startswith("/vapi/worker/"))
        owners: list[str | None] = ["alice", "bob"] if owned else [None]
        for owner in owners:
            url = route.url_for(**_params(world, route, template, owner or "alice")).path  # type: ignore[union-attr]
            if template == "/view":
                url += f"?filename={OUTPUT}&subfolder={world.tasks[owner or 'alice']}&type=output"
            found.append(Call(route.method, url, template, owner, _body(template, world)))
    found.sort(key=lambda call: (call.template == "/vapi/auth/logout", ORDER.get(call.method, 1)))
    return found


def expected(caller: str, call: Call) -> str:
    """``ok``, ``401``, ``403`` or ``404`` (a user's call on another user's task or prompt)."""
    role = access.role_for(call.method, call.template)
    who = IDENTITY_OF[caller]
    if role == "public":
        return "ok"
    if role == "worker":
        return "ok" if who == "worker" else "401"
    if who in ("anonymous", "worker", "refused"):
        return "401"
    if role == "admin" and who != "admin":
        return "403"
    if call.owner is not None and who not in ("admin", call.owner):
        return "404"
    return "ok"


async def _answer(world: World, caller: str, call: Call) -> tuple[int, Any]:
    if call.template in STREAMING:
        return await _status_line(world, call.method, call.url, world.headers(caller)), None
    kwargs: dict[str, Any] = {"headers": world.headers(caller), "allow_redirects": False}
    if call.method in ("POST", "PUT", "PATCH"):
        kwargs["json"] = call.body
    response = await world.client.request(call.method, call.url, **kwargs)
    try:
        body = None
        if call.template.startswith("/history/") and call.method == "GET" and response.status == 200:
            body = await response.json()
        return response.status, body
    finally:
        response.close()


async def _status_line(world: World, method: str, url: str, headers: dict[str, str]) -> int:
    """The status of a call whose answer is an endless stream, read off the socket (the client would wait for the
    body, and a HEAD of the stream is answered with body bytes, which the client refuses)."""
    reader, writer = await asyncio.open_connection(world.client.host, world.client.port)
    try:
        lines = [f"{method} {url} HTTP/1.1", f"Host: {world.client.host}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        status_line = await asyncio.wait_for(reader.readline(), 10)
        return int(status_line.split()[1])
    finally:
        writer.close()


def _mismatch(caller: str, call: Call, status: int, body: Any) -> str | None:
    want = expected(caller, call)
    if status >= 500:
        return f"{status} (server error), expected {want}"
    if want in ("401", "403"):
        return None if str(status) == want else f"{status}, expected {want}"
    if status in (401, 403):
        return f"{status}, expected {want}"
    if call.template == "/history/{prompt_id}":
        if call.method != "GET":
            return None if status == 200 else f"{status}, expected 200"  # HEAD: ComfyUI answers {} when unknown
        shown = bool(body) and _history_prompt(body) is not None
        return None if shown == (want == "ok") else f"history shown={shown}, expected {want}"
    if want == "404":
        if call.template.startswith("/jobs/{job_id}/cancel"):
            return None  # answered {"cancelled": false}; that nothing was cancelled is test_user_views' part
        return None if status == 404 else f"{status}, expected 404"
    if call.owner is not None and status == 404:
        return "404, expected ok"
    return None


def _history_prompt(body: Any) -> str | None:
    return next(iter(body), None) if isinstance(body, dict) else None


@pytest.mark.parametrize("caller", CALLERS)
async def test_every_route_answers_each_caller_as_the_access_table_says(
        services: Services, aiohttp_client: Any, caller: str) -> None:
    world = await make_world(aiohttp_client, services)
    lenient_limiter(world)
    problems = []
    plan = calls(world)
    for call in plan:
        status, body = await _answer(world, caller, call)
        problem = _mismatch(caller, call, status, body)
        if problem:
            problems.append(f"{call.method} {call.url} [{call.template}, owner {call.owner}]: {problem}")
    assert len(plan) > 300  # every prefix of every ComfyUI route, HEAD included
    assert not problems, f"{caller}: {len(problems)} of {len(plan)} calls\n" + "\n".join(problems)


async def test_every_registered_route_states_who_may_call_it(services: Services, aiohttp_client: Any) -> None:
    """A new route cannot be added without its line in ``access.POLICY``: none falls through to the default."""
    world = await make_world(aiohttp_client, services)
    unlisted, used = [], set()
    for route in world.client.app.router.routes():  # type: ignore[union-attr]
        template = _template(route)
        assert template is not None
        if not any(route.method in methods for methods in access.POLICY.get(template, {})):
            unlisted.append(f"{route.method} {route.resource.canonical} -> {template}")  # type: ignore[union-attr]
        used.add(template)
        assert access.role_for(route.method, template) in access.ROLES
    assert not unlisted, "routes without an entry in access.POLICY:\n" + "\n".join(unlisted)
    assert not set(access.POLICY) - used, f"POLICY entries of no route: {set(access.POLICY) - used}"


def test_the_default_for_an_unlisted_route_is_admin() -> None:
    assert access.role_for("GET", "/vapi/some_new_route") == "admin"
    assert access.role_for("POST", "/vapi/worker/some_new_route") == "worker"
    assert access.role_for("DELETE", "/vapi/tasks") == "admin"  # a method the entry does not list
