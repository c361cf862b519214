"""Sign-in routes: sign in and out (the web UI's session cookie), who am I, change my password, my API tokens; and
for admins the users list and the worker tokens. Users themselves are created with ``python -m visionatrix users``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aiohttp import web

from visionatrix.auth.passwords import PasswordError
from visionatrix.auth.store import InvalidName
from visionatrix.errors import NotFound
from visionatrix.server import jsonio, parsing
from visionatrix.server.auth_models import LoginRequest, PasswordChange, TokenCreate
from visionatrix.server.errors import BadRequest
from visionatrix.server.identity import identity
from visionatrix.server.middlewares import error_response
from visionatrix.server.request_models import read as read_body
from visionatrix.server.signin import SESSION_COOKIE, SIGNIN, SignIn, TooManyAttempts


def _json(body: Any, status: int = 200) -> web.Response:
    return web.json_response(body, status=status, dumps=jsonio.dumps)


def _secure(request: web.Request) -> bool:
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


async def login(request: web.Request) -> web.Response:
    signin: SignIn = request.app[SIGNIN]
    if not signin.required:
        raise BadRequest("auth_off", "sign-in is off on this server (VIX_AUTH=off or a loopback bind): every "
                         "request is allowed without it")
    body = await read_body(request, LoginRequest)
    try:
        user = await signin.password_sign_in(request.remote or "", body.name, body.password)
    except TooManyAttempts as exc:
        retry = int(exc.retry_after_s) + 1
        return error_response(429, "too_many_attempts", str(exc), {"retry_after_s": retry},
                              {"Retry-After": str(retry)})
    if user is None:
        return error_response(401, "invalid_credentials", "wrong user name or password")
    secret, _token = await signin.store.issue("session", f"web sign-in from {request.remote or 'unknown'}",
                                              user_id=user.id, ttl=timedelta(seconds=signin.session_ttl_s))
    response = _json({"user": user.view()})
    response.set_cookie(SESSION_COOKIE, secret, httponly=True, samesite="Strict", secure=_secure(request),
                        path="/", max_age=int(signin.session_ttl_s))
    return response


async def logout(request: web.Request) -> web.Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        await request.app[SIGNIN].store.revoke_secret(cookie)
    response = web.Response(status=204)
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


async def me(request: web.Request) -> web.Response:
    signin: SignIn = request.app[SIGNIN]
    caller = identity(request)
    user = await signin.store.user_by_id(caller.user_id) if caller.user_id is not None else None
    return _json({"auth_required": signin.required, "user": user.view() if user is not None else None,
                  "role": caller.role, "via": caller.via})


async def change_password(request: web.Request) -> web.Response:
    signin: SignIn = request.app[SIGNIN]
    caller = identity(request)
    body = await read_body(request, PasswordChange)
    if caller.user_id is None:
        raise BadRequest("no_user", "only a signed-in user has a password to change")
    user = await signin.password_sign_in(request.remote or "", caller.name, body.current_password)
    if user is None:
        raise BadRequest("invalid_credentials", "the current password is wrong")
    try:
        await signin.store.set_password(caller.name, body.new_password)
    except PasswordError as exc:
        raise BadRequest("invalid_password", str(exc)) from None
    return web.Response(status=204)


async def _issue(request: web.Request, kind: str, user_id: int | None) -> web.Response:
    body = await read_body(request, TokenCreate)
    ttl = timedelta(days=body.expires_in_days) if body.expires_in_days is not None else None
    try:
        secret, token = await request.app[SIGNIN].store.issue(kind, body.name, user_id=user_id, ttl=ttl)
    except InvalidName as exc:
        raise BadRequest("invalid_request", str(exc), {"name": str(exc)}) from None
    return _json({**token.view(), "token": secret}, status=201)


def _token_id(request: web.Request) -> int:
    raw = request.match_info["token_id"]
    value = parsing.row_id(raw)
    if value is None:
        raise NotFound("token", raw)
    return value


async def list_tokens(request: web.Request) -> web.Response:
    caller = identity(request)
    tokens = await request.app[SIGNIN].store.tokens(kind="api", user_id=caller.user_id if caller.user_id else -1)
    return _json({"tokens": [token.view() for token in tokens]})


async def create_token(request: web.Request) -> web.Response:
    caller = identity(request)
    if caller.user_id is None:
        raise BadRequest("no_user", "API tokens belong to a user; sign-in is off on this server")
    return await _issue(request, "api", caller.user_id)


async def revoke_token(request: web.Request) -> web.Response:
    caller = identity(request)
    token = await request.app[SIGNIN].store.revoke(_token_id(request), kind="api",
                                                   user_id=caller.user_id if caller.user_id else -1)
    return _json(token.view())


async def list_users(request: web.Request) -> web.Response:
    return _json({"users": [user.view() for user in await request.app[SIGNIN].store.users()]})


async def list_worker_tokens(request: web.Request) -> web.Response:
    tokens = await request.app[SIGNIN].store.tokens(kind="worker")
    return _json({"tokens": [token.view() for token in tokens]})


async def create_worker_token(request: web.Request) -> web.Response:
    return await _issue(request, "worker", None)


async def revoke_worker_token(request: web.Request) -> web.Response:
    token = await request.app[SIGNIN].store.revoke(_token_id(request), kind="worker")
    return _json(token.view())


def add_routes(router: web.UrlDispatcher, prefix: str) -> None:
    router.add_post(f"{prefix}/auth/login", login, name="auth_login")
    router.add_post(f"{prefix}/auth/logout", logout, name="auth_logout")
    router.add_get(f"{prefix}/auth/me", me, name="auth_me")
    router.add_post(f"{prefix}/auth/password", change_password, name="auth_password")
    router.add_get(f"{prefix}/auth/tokens", list_tokens, name="auth_tokens")
    router.add_post(f"{prefix}/auth/tokens", create_token)
    router.add_delete(f"{prefix}/auth/tokens/{{token_id}}", revoke_token, name="auth_token")
    router.add_get(f"{prefix}/users", list_users, name="users")
    router.add_get(f"{prefix}/worker_tokens", list_worker_tokens, name="worker_tokens")
    router.add_post(f"{prefix}/worker_tokens", create_worker_token)
    router.add_delete(f"{prefix}/worker_tokens/{{token_id}}", revoke_worker_token, name="worker_token")
