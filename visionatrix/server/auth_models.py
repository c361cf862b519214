"""The sign-in routes' request and response bodies as pydantic models: one definition that validates the request
(``request_models.read``, as every request body) and generates the OpenAPI part (``openapi_auth``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from visionatrix.server.request_models import RequestBody

MAX_TOKEN_DAYS = 3650


class LoginRequest(RequestBody):
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class PasswordChange(RequestBody):
    current_password: str = Field(max_length=1024)
    new_password: str = Field(min_length=8, max_length=1024)


class TokenCreate(RequestBody):
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
