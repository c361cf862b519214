"""``AuthStore``: the ``users`` and ``auth_tokens`` tables — create, list, disable users, change passwords; issue,
resolve and revoke tokens.

A token is ``vix_<kind letter>_<43 random url-safe characters>``; only its SHA-256 is stored, so a copy of the
database gives no working token. Passwords are hashed with scrypt (``passwords.py``) in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from visionatrix.auth.passwords import DUMMY_HASH, check_password, hash_password, verify_password
from visionatrix.db.tables import AuthToken, User
from visionatrix.errors import Conflict, NotFound

USERS = User.__table__
TOKENS = AuthToken.__table__
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
TOKEN_PREFIX = {"session": "vix_s_", "api": "vix_a_", "worker": "vix_w_"}
MAX_TOKEN_NAME = 255


class InvalidName(ValueError):
    """A user or token name that cannot be used."""


@dataclass(frozen=True)
class UserRecord:
    id: int
    name: str
    is_admin: bool
    disabled: bool
    created_at: datetime

    def view(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "role": "admin" if self.is_admin else "user",
                "disabled": self.disabled, "created_at": self.created_at}


@dataclass(frozen=True)
class TokenRecord:
    id: int
    kind: str
    user_id: int | None
    name: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None

    def view(self) -> dict[str, object]:
        """What the API shows of a token: never its secret (nor its hash)."""
        return {"id": self.id, "kind": self.kind, "name": self.name, "created_at": self.created_at,
                "expires_at": self.expires_at, "last_used_at": self.last_used_at,
                "revoked": self.revoked_at is not None}


def _now() -> datetime:
    return datetime.now(UTC)


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise InvalidName(f"user name {name!r} must be 1-64 letters, digits, '.', '_', '@' or '-', starting with a "
                          "letter or digit")
    return name


def _user(row: object) -> UserRecord:
    return UserRecord(id=row.id, name=row.name, is_admin=bool(row.is_admin), disabled=bool(row.disabled),  # type: ignore[attr-defined]
                      created_at=row.created_at)  # type: ignore[attr-defined]


def _token(row: object) -> TokenRecord:
    r = row
    return TokenRecord(id=r.id, kind=r.kind, user_id=r.user_id, name=r.name, created_at=r.created_at,  # type: ignore[attr-defined]
                       expires_at=r.expires_at, last_used_at=r.last_used_at, revoked_at=r.revoked_at)  # type: ignore[attr-defined]


class AuthStore:
    """Users and tokens on ``engine`` (the queue's database)."""

    LAST_USED_EVERY = timedelta(minutes=1)
    """``last_used_at`` is written at most this often per token (a busy script must not write on every call)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- users ------------------------------------------------------------------------------------------------

    async def create_user(self, name: str, password: str, *, admin: bool = False) -> UserRecord:
        """A new user; ``InvalidName``, ``PasswordError``, ``Conflict`` when the name is taken."""
        check_name(name)
        stored = await asyncio.to_thread(hash_password, password)
        row = {"name": name, "password_hash": stored, "is_admin": admin, "disabled": False, "created_at": _now()}
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(USERS), row)
        except IntegrityError:
            raise Conflict(f"a user named {name!r} exists already") from None
        return await self.user(name)

    async def user(self, name: str) -> UserRecord:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(USERS).where(USERS.c.name == name))).first()
        if row is None:
            raise NotFound("user", name)
        return _user(row)

    async def user_by_id(self, user_id: int) -> UserRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(USERS).where(USERS.c.id == user_id))).first()
        return None if row is None else _user(row)

    async def credentials(self, user_id: int) -> tuple[UserRecord, str] | None:
        """The user and their stored password hash (to tell whether a remembered password is still theirs)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(USERS).where(USERS.c.id == user_id))).first()
        return None if row is None else (_user(row), str(row.password_hash))

    async def users(self) -> list[UserRecord]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(USERS).order_by(USERS.c.id))).all()
        return [_user(row) for row in rows]

    async def count_users(self, *, enabled_only: bool = True) -> int:
        query = select(func.count()).select_from(USERS)
        if enabled_only:
            query = query.where(USERS.c.disabled.is_(False))
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def set_disabled(self, name: str, disabled: bool = True) -> UserRecord:
        """Disable (or enable) a user; a disabled user's sessions and API tokens are revoked at once."""
        user = await self.user(name)
        async with self.engine.begin() as conn:
            await conn.execute(update(USERS).where(USERS.c.id == user.id).values(disabled=disabled))
            if disabled:
                await conn.execute(update(TOKENS).where(TOKENS.c.user_id == user.id, TOKENS.c.revoked_at.is_(None))
                                   .values(revoked_at=_now()))
        return await self.user(name)

    async def set_password(self, name: str, password: str) -> UserRecord:
        """A new password; the user's web UI sessions end (API tokens stay)."""
        check_password(password)
        user = await self.user(name)
        stored = await asyncio.to_thread(hash_password, password)
        async with self.engine.begin() as conn:
            await conn.execute(update(USERS).where(USERS.c.id == user.id).values(password_hash=stored))
            await conn.execute(update(TOKENS).where(TOKENS.c.user_id == user.id, TOKENS.c.kind == "session",
                                                    TOKENS.c.revoked_at.is_(None)).values(revoked_at=_now()))
        return user

    async def authenticate(self, name: str, password: str) -> UserRecord | None:
        """The enabled user ``name`` when ``password`` is theirs; None otherwise (an unknown name costs the same
        time as a wrong password)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(USERS).where(USERS.c.name == name))).first() if NAME_RE.fullmatch(
                name) else None
        stored = row.password_hash if row is not None else DUMMY_HASH
        matches = await asyncio.to_thread(verify_password, password, stored)
        if row is None or not matches or row.disabled:
            return None
        return _user(row)

    # -- tokens -----------------------------------------------------------------------------------------------

    async def issue(self, kind: str, name: str, *, user_id: int | None = None,
                    ttl: timedelta | None = None) -> tuple[str, TokenRecord]:
        """A new token: ``(secret, record)``; the secret is shown once and never stored."""
        if kind not in TOKEN_PREFIX:
            raise ValueError(f"unknown token kind {kind!r}")
        name = name.strip()
        if not name or len(name) > MAX_TOKEN_NAME or any(ord(char) < 32 for char in name):
            raise InvalidName(f"a token's name must be 1-{MAX_TOKEN_NAME} printable characters")
        secret = TOKEN_PREFIX[kind] + secrets.token_urlsafe(32)
        now = _now()
        row = {"kind": kind, "user_id": user_id, "name": name, "token_hash": token_hash(secret), "created_at": now,
               "expires_at": now + ttl if ttl is not None else None, "last_used_at": None, "revoked_at": None}
        async with self.engine.begin() as conn:
            await conn.execute(insert(TOKENS), row)
            token = (await conn.execute(select(TOKENS).where(TOKENS.c.token_hash == row["token_hash"]))).one()
        return secret, _token(token)

    async def resolve(self, secret: str, kinds: tuple[str, ...]) -> tuple[TokenRecord, UserRecord | None] | None:
        """The live token ``secret`` of one of ``kinds`` and its (enabled) user; None when unknown, revoked,
        expired, of another kind, or its user is disabled."""
        if not secret.startswith(tuple(TOKEN_PREFIX[kind] for kind in kinds)) or len(secret) > 128:
            return None
        digest = token_hash(secret)
        user_columns = [column.label(f"u_{column.name}") for column in USERS.c if column.name != "password_hash"]
        query = (select(TOKENS, *user_columns).select_from(TOKENS.outerjoin(USERS, USERS.c.id == TOKENS.c.user_id))
                 .where(TOKENS.c.token_hash == digest))
        async with self.engine.connect() as conn:  # one query per request: the token and its user together
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        token = _token(row)
        user_row = None if row.u_id is None else SimpleNamespace(
            id=row.u_id, name=row.u_name, is_admin=row.u_is_admin, disabled=row.u_disabled, created_at=row.u_created_at)
        now = _now()
        if token.kind not in kinds or token.revoked_at is not None or (
                token.expires_at is not None and token.expires_at <= now):
            return None
        user = _user(user_row) if user_row is not None else None
        if token.user_id is not None and (user is None or user.disabled):
            return None
        if token.last_used_at is None or now - token.last_used_at >= self.LAST_USED_EVERY:
            await self._touch(token, now)
        return token, user

    async def _touch(self, token: TokenRecord, now: datetime) -> None:
        values: dict[str, object] = {"last_used_at": now}
        if token.kind == "session" and token.expires_at is not None and token.last_used_at is not None:
            values["expires_at"] = token.expires_at + (now - token.last_used_at)  # a session lasts while used
        async with self.engine.begin() as conn:
            await conn.execute(update(TOKENS).where(TOKENS.c.id == token.id).values(**values))

    async def tokens(self, *, kind: str, user_id: int | None = None) -> list[TokenRecord]:
        """Tokens of ``kind`` (of ``user_id`` when given), oldest first, revoked ones included."""
        query = select(TOKENS).where(TOKENS.c.kind == kind).order_by(TOKENS.c.id)
        if user_id is not None:
            query = query.where(TOKENS.c.user_id == user_id)
        async with self.engine.connect() as conn:
            return [_token(row) for row in (await conn.execute(query)).all()]

    async def revoke(self, token_id: int, *, kind: str, user_id: int | None = None) -> TokenRecord:
        """Revoke a token of ``kind`` (belonging to ``user_id`` when given); ``NotFound`` otherwise."""
        query = select(TOKENS).where(TOKENS.c.id == token_id, TOKENS.c.kind == kind)
        if user_id is not None:
            query = query.where(TOKENS.c.user_id == user_id)
        async with self.engine.begin() as conn:
            row = (await conn.execute(query)).first()
            if row is None:
                raise NotFound("token", str(token_id))
            if row.revoked_at is None:
                await conn.execute(update(TOKENS).where(TOKENS.c.id == token_id).values(revoked_at=_now()))
            row = (await conn.execute(select(TOKENS).where(TOKENS.c.id == token_id))).one()
        return _token(row)

    async def revoke_secret(self, secret: str) -> None:
        """Revoke the token ``secret`` (a sign-out); nothing when unknown."""
        async with self.engine.begin() as conn:
            await conn.execute(update(TOKENS).where(TOKENS.c.token_hash == token_hash(secret),
                                                    TOKENS.c.revoked_at.is_(None)).values(revoked_at=_now()))
