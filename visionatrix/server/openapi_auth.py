"""The OpenAPI part of the sign-in routes, generated from their pydantic models (``auth_models``), and the
security every operation states, generated from the access table (``access.POLICY``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from visionatrix.server import access, auth_models
from visionatrix.server.openapi_parts import errors as _errors
from visionatrix.server.openapi_parts import json_body as _json
from visionatrix.server.openapi_parts import ref as _ref

_MODELS: tuple[type[BaseModel], ...] = (
    auth_models.LoginRequest, auth_models.PasswordChange, auth_models.TokenCreate, auth_models.UserView,
    auth_models.TokenView, auth_models.NewToken, auth_models.Me, auth_models.LoginAnswer, auth_models.UserList,
    auth_models.TokenList)
_TOKEN_ID = {"name": "token_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}

SECURITY_SCHEMES: dict[str, Any] = {
    "session": {"type": "apiKey", "in": "cookie", "name": "vix_session",
                "description": "The web UI's sign-in (POST /vapi/auth/login)"},
    "basic": {"type": "http", "scheme": "basic", "description": "A user's name and password"},
    "apiToken": {"type": "http", "scheme": "bearer", "description": "A user's API token (POST /vapi/auth/tokens)"},
}
_USER_SECURITY = [{"session": []}, {"basic": []}, {"apiToken": []}]


def schemas() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in _MODELS:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model.__name__)}}}


def _op(summary: str, ok: tuple[str, type[BaseModel] | None], *codes: int, body: type[BaseModel] | None = None,
        parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    status, model = ok
    answer = _json(_ref(model.__name__), "OK") if model is not None else {"description": "Done"}
    operation: dict[str, Any] = {"summary": summary, "responses": {status: answer, **_errors(*codes)}}
    if body is not None:
        operation["requestBody"] = _body(body)
    if parameters:
        operation["parameters"] = parameters
    return operation


def paths() -> dict[str, Any]:
    M = auth_models
    return {
        "/vapi/auth/login": {"post": _op("Sign in: sets the session cookie (HttpOnly, SameSite=Strict)",
                                         ("200", M.LoginAnswer), 400, 401, 429, body=M.LoginRequest)},
        "/vapi/auth/logout": {"post": _op("Sign out: ends the session and clears its cookie", ("204", None))},
        "/vapi/auth/me": {"get": _op("Who the caller is, and whether the server requires sign-in", ("200", M.Me))},
        "/vapi/auth/password": {"post": _op("Change my password (ends my web sessions)", ("204", None), 400, 401,
                                            body=M.PasswordChange)},
        "/vapi/auth/tokens": {
            "get": _op("My API tokens (never their secrets)", ("200", M.TokenList), 401),
            "post": _op("A new API token; its secret is shown once", ("201", M.NewToken), 400, 401, body=M.TokenCreate),
        },
        "/vapi/auth/tokens/{token_id}": {"delete": _op("Revoke one of my API tokens", ("200", M.TokenView), 401, 404,
                                                       parameters=[_TOKEN_ID])},
        "/vapi/users": {"get": _op("Every user (admin)", ("200", M.UserList), 401, 403)},
        "/vapi/worker_tokens": {
            "get": _op("Worker tokens (admin; never their secrets)", ("200", M.TokenList), 401, 403),
            "post": _op("A new worker token (admin); its secret is shown once", ("201", M.NewToken), 400, 401, 403,
                        body=M.TokenCreate),
        },
        "/vapi/worker_tokens/{token_id}": {"delete": _op("Revoke a worker token (admin): the worker stops at its next "
                                                         "call", ("200", M.TokenView), 401, 403, 404,
                                                         parameters=[_TOKEN_ID])},
    }


def state_roles(paths: dict[str, Any]) -> None:
    """Every operation gets ``x-required-role`` from the access table and the matching ``security``."""
    for path, operations in paths.items():
        for method, operation in operations.items():
            role = access.role_for(method.upper(), path)
            operation["x-required-role"] = role
            responses = operation.setdefault("responses", {})
            if role in ("user", "admin"):
                operation["security"] = _USER_SECURITY
                responses.update({code: ref for code, ref in _errors(401, 403 if role == "admin" else 401).items()
                                  if code not in responses})
            elif role == "public":
                operation["security"] = [{}]
