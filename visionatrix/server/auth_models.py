"""The sign-in routes' request and response bodies as pydantic models: one definition that validates the request
(``read_model``) and generates the OpenAPI part (``openapi_auth``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from visionatrix.server import parsing
from visionatrix.server.errors import BadRequest

MAX_TOKEN_DAYS = 3650


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LoginRequest(_Body):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class PasswordChange(_Body):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(min_length=8, max_length=1024)


class TokenCreate(_Body):
    name: str = Field(min_length=1, max_length=255, description="What the token is for, shown in the list")
    expires_in_days: int | None = Field(default=None, ge=1, le=MAX_TOKEN_DAYS,
                                        description="None: the token lasts until revoked")


class UserView(BaseModel):
    id: int
    name: str
    role: Literal["admin", "user"]
    disabled: bool
    created_at: datetime


class TokenView(BaseModel):
    id: int
    kind: Literal["session", "api", "worker"]
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked: bool


class NewToken(TokenView):
    token: str = Field(description="The secret, shown this once: send it as `Authorization: Bearer <token>`")


class Me(BaseModel):
    auth_required: bool = Field(description="Whether this server requires sign-in")
    user: UserView | None
    role: Literal["admin", "user", "worker", "anonymous"]
    via: str = Field(description="How the caller signed in: open, session, basic, token")


class LoginAnswer(BaseModel):
    user: UserView


class UserList(BaseModel):
    users: list[UserView]


class TokenList(BaseModel):
    tokens: list[TokenView]


Body = TypeVar("Body", bound=BaseModel)


async def read_model(request: web.Request, model: type[Body]) -> Body:
    """The JSON body as ``model``; a 400 ``invalid_body`` naming every field that is wrong."""
    raw = await parsing.read_json(request)
    if not isinstance(raw, dict):
        raise BadRequest("invalid_body", "the request body must be a JSON object")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems: dict[str, Any] = {".".join(str(p) for p in error["loc"]) or "body": error["msg"]
                                    for error in exc.errors(include_url=False)}
        lines = "; ".join(f"{name}: {why}" for name, why in problems.items())
        raise BadRequest("invalid_body", f"the request body is malformed: {lines}", problems) from None
