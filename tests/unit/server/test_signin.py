"""Signing in and out, ``/vapi/auth/me``, failed sign-in limits, Basic, API tokens, password changes, worker tokens
beside ``WORKER_AUTH``, the editor's redirect to the sign-in page, and secrets kept out of logs and replies."""

from __future__ import annotations

import logging
from datetime import timedelta
from http.cookies import SimpleCookie
from typing import Any

import pytest

from tests.unit.server.signin_world import PASSWORDS, WORKER_AUTH, World, basic, bearer, cookie, make_world
from visionatrix.server.services import Services
from visionatrix.server.signin import SESSION_COOKIE, SIGNIN
from visionatrix.server.signin_limits import FailureLimiter

CLAIM = {"worker_id": "w1", "installed_flows": ["web_resize_sharpen"], "wait_s": 0}


@pytest.fixture
async def world(services: Services, aiohttp_client: Any) -> World:
    return await make_world(aiohttp_client, services)


async def _status(world: World, method: str, path: str, headers: dict[str, str], **kwargs: Any) -> int:
    response = await world.client.request(method, path, headers=headers, allow_redirects=False, **kwargs)
    response.close()
    return response.status


async def _login(world: World, name: str, password: str, **headers: str) -> Any:
    return await world.client.post("/vapi/auth/login", json={"name": name, "password": password}, headers=headers)


def _set_cookie(response: Any) -> Any:
    [header] = response.headers.getall("Set-Cookie")
    return SimpleCookie(header)[SESSION_COOKIE], header


async def test_login_sets_an_httponly_strict_cookie_for_the_whole_site(world: World) -> None:
    response = await _login(world, "alice", PASSWORDS["alice"])
    assert response.status == 200
    assert (await response.json())["user"]["name"] == "alice"
    morsel, header = _set_cookie(response)
    assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/"
    assert not morsel["secure"] and "Secure" not in header
    assert morsel.value.startswith("vix_s_")
    assert await _status(world, "GET", "/vapi/tasks", cookie(morsel.value)) == 200


async def test_the_cookie_is_secure_behind_an_https_proxy(world: World) -> None:
    response = await _login(world, "alice", PASSWORDS["alice"], **{"X-Forwarded-Proto": "https"})
    morsel, _ = _set_cookie(response)
    assert response.status == 200 and morsel["secure"]


async def test_logout_revokes_the_session(world: World) -> None:
    session = await world.login("alice")
    assert await _status(world, "GET", "/vapi/tasks", cookie(session)) == 200
    response = await world.client.post("/vapi/auth/logout", headers=cookie(session))
    assert response.status == 204
    morsel, _ = _set_cookie(response)
    assert morsel.value == "" and morsel["path"] == "/"  # the browser forgets it
    assert await _status(world, "GET", "/vapi/tasks", cookie(session)) == 401  # and the server too


async def _me(world: World, headers: dict[str, str]) -> dict[str, Any]:
    response = await world.client.get("/vapi/auth/me", headers=headers)
    assert response.status == 200
    return await response.json()


async def test_me_says_who_is_signed_in_and_how(world: World) -> None:
    anonymous = await _me(world, {})
    assert anonymous == {"auth_required": True, "user": None, "role": "anonymous", "via": "none"}
    session = await _me(world, cookie(world.secrets["alice_session"]))
    assert (session["user"]["name"], session["role"], session["via"]) == ("alice", "user", "session")
    assert "password" not in str(session) and "hash" not in str(session)
    assert (await _me(world, basic("alice", PASSWORDS["alice"])))["via"] == "basic"
    assert (await _me(world, bearer(world.secrets["alice_api"])))["via"] == "token"
    admin = await _me(world, cookie(world.secrets["root_session"]))
    assert (admin["user"]["name"], admin["role"]) == ("root", "admin")
    for stale in (cookie(world.secrets["alice_api"]), bearer(world.secrets["alice_api_revoked"]),
                  bearer(world.secrets["carol_api"])):
        assert (await _me(world, stale))["role"] == "anonymous"  # a public route: wrong credentials show nobody


@pytest.mark.parametrize(("name", "password"), [("alice", "not-her-password"), ("nobody", "whatever-1234"),
                                                ("carol", PASSWORDS["carol"])])
async def test_a_wrong_unknown_or_disabled_sign_in_is_401_and_sets_no_cookie(
        world: World, name: str, password: str) -> None:
    response = await _login(world, name, password)
    assert response.status == 401
    assert (await response.json())["error"] == "invalid_credentials"
    assert "Set-Cookie" not in response.headers
    assert await _status(world, "GET", "/vapi/tasks", basic(name, password)) == 401


async def test_a_bad_login_body_is_400(world: World) -> None:
    for body in ({}, {"name": "alice"}, {"name": "alice", "password": 5}, {"name": "alice", "password": "x",
                                                                             "admin": True}):
        response = await world.client.post("/vapi/auth/login", json=body)
        assert response.status == 400 and (await response.json())["error"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _limit(world: World, **kwargs: Any) -> FakeClock:
    clock = FakeClock()
    world.client.app[SIGNIN].limiter = FailureLimiter(clock=clock, window_s=60, **kwargs)  # type: ignore[index]
    return clock


async def _assert_locked(response: Any, most_s: int) -> None:
    assert response.status == 429
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= most_s + 1  # rounded up
    body = await response.json()
    assert body["error"] == "too_many_attempts" and body["details"]["retry_after_s"] == retry_after


async def test_failed_sign_ins_lock_the_user_name_until_the_window_moves_on(world: World) -> None:
    clock = _limit(world, per_user=3, per_address=100)
    for _ in range(3):
        assert (await _login(world, "alice", "wrong-password")).status == 401
        clock.now += 1
    await _assert_locked(await _login(world, "alice", PASSWORDS["alice"]), 60)  # right password, still locked
    assert await _status(world, "GET", "/vapi/tasks", basic("alice", PASSWORDS["alice"])) == 429  # Basic too
    assert (await _login(world, "bob", PASSWORDS["bob"])).status == 200  # another name is not locked
    clock.now += 57.5  # the first failure leaves the window
    assert (await _login(world, "alice", PASSWORDS["alice"])).status == 200
    assert (await _login(world, "alice", "wrong-password")).status == 401  # a success cleared her count
    assert (await _login(world, "alice", "wrong-password")).status == 401


async def test_failed_sign_ins_from_one_address_lock_every_name(world: World) -> None:
    clock = _limit(world, per_user=100, per_address=4)
    for name in ("u1", "u2", "alice", "u3"):
        assert (await _login(world, name, "wrong-password")).status == 401
    await _assert_locked(await _login(world, "bob", PASSWORDS["bob"]), 60)
    await _assert_locked(await world.client.get("/vapi/tasks", headers=basic("bob", PASSWORDS["bob"])), 60)
    assert await _status(world, "GET", "/vapi/tasks", bearer(world.secrets["bob_api"])) == 200  # tokens unaffected
    clock.now += 61
    assert (await _login(world, "bob", PASSWORDS["bob"])).status == 200


async def test_a_cached_basic_sign_in_still_refuses_a_disabled_user(world: World) -> None:
    headers = basic("alice", PASSWORDS["alice"])
    assert await _status(world, "GET", "/vapi/tasks", headers) == 200
    assert await _status(world, "GET", "/vapi/tasks", headers) == 200  # from the cache
    await world.store.set_disabled("alice")
    assert await _status(world, "GET", "/vapi/tasks", headers) == 401
    await world.store.set_disabled("alice", False)
    assert await _status(world, "GET", "/vapi/tasks", headers) == 200


async def test_a_basic_sign_in_with_a_wrong_password_is_not_served_from_the_cache(world: World) -> None:
    assert await _status(world, "GET", "/vapi/tasks", basic("alice", PASSWORDS["alice"])) == 200
    assert await _status(world, "GET", "/vapi/tasks", basic("alice", PASSWORDS["alice"] + "x")) == 401
    assert await _status(world, "GET", "/vapi/tasks", basic("bob", PASSWORDS["alice"])) == 401


async def test_api_tokens_show_their_secret_once_and_stop_working_when_revoked(world: World) -> None:
    session = cookie(world.secrets["alice_session"])
    response = await world.client.post("/vapi/auth/tokens", json={"name": "my script"}, headers=session)
    assert response.status == 201
    created = await response.json()
    secret = created["token"]
    assert secret.startswith("vix_a_") and created["kind"] == "api" and created["revoked"] is False
    listing = await world.client.get("/vapi/auth/tokens", headers=bearer(secret))
    text = await listing.text()
    assert listing.status == 200 and secret not in text
    tokens = (await listing.json())["tokens"]
    assert [t["name"] for t in tokens] == ["alice_api", "alice_api_spare", "alice_api_revoked", "my script"]
    assert all("token" not in t and "token_hash" not in t for t in tokens)
    bobs = await (await world.client.get("/vapi/auth/tokens", headers=bearer(world.secrets["bob_api"]))).json()
    assert [t["name"] for t in bobs["tokens"]] == ["bob_api"]  # each sees only their own
    assert await _status(world, "DELETE", f"/vapi/auth/tokens/{created['id']}",
                         bearer(world.secrets["bob_api"])) == 404  # not bob's to revoke
    assert await _status(world, "GET", "/vapi/tasks", bearer(secret)) == 200
    revoked = await world.client.delete(f"/vapi/auth/tokens/{created['id']}", headers=session)
    assert revoked.status == 200 and (await revoked.json())["revoked"] is True
    assert await _status(world, "GET", "/vapi/tasks", bearer(secret)) == 401


async def test_an_expired_api_token_is_401(world: World) -> None:
    secret, _ = await world.store.issue("api", "short", user_id=world.users["alice"].id, ttl=timedelta(seconds=-1))
    assert await _status(world, "GET", "/vapi/tasks", bearer(secret)) == 401
    response = await world.client.post("/vapi/auth/tokens", json={"name": "a month", "expires_in_days": 30},
                                       headers=bearer(world.secrets["alice_api"]))
    assert response.status == 201 and (await response.json())["expires_at"] is not None
    for days in (0, 100_000, "7"):
        response = await world.client.post("/vapi/auth/tokens", json={"name": "x", "expires_in_days": days},
                                           headers=bearer(world.secrets["alice_api"]))
        assert response.status == 400


async def test_changing_the_password_ends_sessions_and_keeps_api_tokens(world: World) -> None:
    first, second = world.secrets["alice_session"], await world.login("alice")
    new = "a-brand-new-password"
    wrong = await world.client.post("/vapi/auth/password", headers=cookie(first),
                                    json={"current_password": "not-it", "new_password": new})
    assert wrong.status == 400 and (await wrong.json())["error"] == "invalid_credentials"
    short = await world.client.post("/vapi/auth/password", headers=cookie(first),
                                    json={"current_password": PASSWORDS["alice"], "new_password": "short"})
    assert short.status == 400
    response = await world.client.post("/vapi/auth/password", headers=cookie(first),
                                       json={"current_password": PASSWORDS["alice"], "new_password": new})
    assert response.status == 204
    assert await _status(world, "GET", "/vapi/tasks", cookie(first)) == 401
    assert await _status(world, "GET", "/vapi/tasks", cookie(second)) == 401
    assert await _status(world, "GET", "/vapi/tasks", bearer(world.secrets["alice_api"])) == 200
    assert await _status(world, "GET", "/vapi/tasks", cookie(world.secrets["bob_session"])) == 200  # others stay
    assert (await _login(world, "alice", PASSWORDS["alice"])).status == 401
    assert (await _login(world, "alice", new)).status == 200
    assert await _status(world, "GET", "/vapi/tasks", basic("alice", new)) == 200


async def test_the_old_password_stops_working_over_basic_after_a_change(world: World) -> None:
    old = basic("alice", PASSWORDS["alice"])
    assert await _status(world, "GET", "/vapi/tasks", old) == 200  # remembered by the Basic cache
    response = await world.client.post("/vapi/auth/password", headers=old,
                                       json={"current_password": PASSWORDS["alice"], "new_password": "new-pass-1234"})
    assert response.status == 204
    assert await _status(world, "GET", "/vapi/tasks", old) == 401


async def test_worker_tokens_open_the_worker_routes_and_nothing_else(world: World) -> None:
    worker = bearer(world.secrets["worker"])
    response = await world.client.post("/vapi/worker/claim", json=CLAIM, headers=worker)
    assert response.status == 200, await response.text()
    assert await _status(world, "GET", "/vapi/tasks", worker) == 401
    assert await _status(world, "GET", "/vapi/workers", worker) == 401
    assert await _status(world, "POST", "/vapi/worker/claim", bearer(world.secrets["worker_revoked"]),
                         json=CLAIM) == 401
    assert await _status(world, "POST", "/vapi/worker/claim", bearer(WORKER_AUTH), json=CLAIM) == 200
    assert await _status(world, "GET", "/vapi/tasks", bearer(WORKER_AUTH)) == 401


@pytest.mark.parametrize("caller", ["alice_session", "alice_basic", "alice_api", "root_session", "anonymous"])
async def test_user_credentials_are_refused_on_worker_routes(world: World, caller: str) -> None:
    response = await world.client.post("/vapi/worker/claim", json=CLAIM, headers=world.headers(caller))
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="visionatrix workers"'
    assert (await response.json())["error"] == "unauthorized"


async def test_an_admin_issues_and_revokes_worker_tokens(world: World) -> None:
    admin = cookie(world.secrets["root_session"])
    response = await world.client.post("/vapi/worker_tokens", json={"name": "gpu box"}, headers=admin)
    assert response.status == 201
    created = await response.json()
    assert created["token"].startswith("vix_w_")
    listing = await world.client.get("/vapi/worker_tokens", headers=admin)
    assert created["token"] not in await listing.text()
    assert await _status(world, "POST", "/vapi/worker/claim", bearer(created["token"]), json=CLAIM) == 200
    assert await _status(world, "DELETE", f"/vapi/worker_tokens/{created['id']}", admin) == 200
    assert await _status(world, "POST", "/vapi/worker/claim", bearer(created["token"]), json=CLAIM) == 401
    assert await _status(world, "POST", "/vapi/worker_tokens", cookie(world.secrets["alice_session"]),
                         json={"name": "mine"}) == 403


async def test_the_editor_page_sends_an_anonymous_visitor_to_sign_in(world: World) -> None:
    response = await world.client.get("/comfy/", allow_redirects=False)
    assert response.status == 302 and response.headers["Location"] == "/?next=/comfy/"
    assert await _status(world, "GET", "/comfy/", cookie(world.secrets["alice_session"])) == 200
    assert await _status(world, "GET", "/vapi/tasks", {}) == 401  # an API route is answered, not redirected


async def test_secrets_never_reach_the_logs_or_the_replies(world: World, caplog: pytest.LogCaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("aiohttp.access", "aiohttp.server", "aiohttp.web", "visionatrix", "aiosqlite"):
        # an earlier test of the session may have configured logging (disabled or detached a logger)
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)  # the CLI raises aiosqlite's
    caplog.set_level(logging.DEBUG)
    logging.getLogger("visionatrix.tests").debug("the log is captured")
    secrets = dict(world.secrets)
    new = "another-password-9876"
    await _login(world, "alice", "a-wrong-password-555")
    secrets["session"] = await world.login("alice")
    created = await (await world.client.post("/vapi/auth/tokens", json={"name": "t"},
                                             headers=basic("alice", PASSWORDS["alice"]))).json()
    secrets["new_api"] = created["token"]
    await world.client.post("/vapi/worker/claim", json=CLAIM, headers=bearer(world.secrets["worker"]))
    await world.client.post("/vapi/worker/claim", json=CLAIM, headers=bearer(WORKER_AUTH))
    await world.client.get("/vapi/tasks", headers=bearer(world.secrets["alice_api_revoked"]))
    await world.client.post("/vapi/auth/password", headers=cookie(secrets["session"]),
                            json={"current_password": PASSWORDS["alice"], "new_password": new})
    replies = []
    paths = ["/vapi/tasks", f"/vapi/tasks/{world.tasks['alice']}", "/queue", "/history", "/api/jobs",
             "/system_stats", "/vapi/auth/tokens", "/vapi/auth/me"]
    for headers, extra in ((bearer(world.secrets["alice_api"]), []),
                           (cookie(world.secrets["root_session"]), ["/vapi/users", "/vapi/worker_tokens"])):
        for path in paths + extra:
            response = await world.client.get(path, headers=headers)
            assert response.status == 200, path
            replies.append(f"{path}: {await response.text()}")
    secret_values = [*PASSWORDS.values(), new, *secrets.values()]
    logged = [f"{r.name}: {r.getMessage()} {r.exc_text or ''}" for r in caplog.records]
    assert len(logged) > 5  # the requests were logged (aiohttp's access log at least)
    for value in secret_values:
        assert not [line for line in logged if value in line], f"a secret was logged: {value[:6]}..."
        assert not [reply for reply in replies if value in reply], f"a secret was in a reply: {value[:6]}..."
