"""``AuthStore`` on every database: users (unique names, bad names, passwords hashed, sign-in right / wrong /
unknown / disabled), tokens (issue, resolve by kind, revoke, expiry, ``last_used_at`` written at most once a
minute, sessions extended while used), and what disabling a user or changing a password ends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.conftest import Database
from visionatrix.auth.passwords import PasswordError
from visionatrix.auth.store import TOKENS, USERS, AuthStore, InvalidName
from visionatrix.errors import Conflict, NotFound

PASSWORD = "correct horse battery"


@pytest.fixture
async def store(engine: AsyncEngine) -> AsyncIterator[AuthStore]:
    """The store on empty ``users`` and ``auth_tokens`` (the shared servers keep rows between tests)."""
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM auth_tokens"))
        await conn.execute(text("DELETE FROM users"))
    yield AuthStore(engine)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


async def test_user_names_are_unique(store: AuthStore) -> None:
    alice = await store.create_user("alice", PASSWORD)
    assert (alice.name, alice.is_admin, alice.disabled) == ("alice", False, False)
    with pytest.raises(Conflict):
        await store.create_user("alice", "another password")
    root = await store.create_user("root", PASSWORD, admin=True)
    assert root.is_admin and [u.name for u in await store.users()] == ["alice", "root"]
    assert await store.count_users() == 2


async def test_a_name_in_other_case_is_not_the_user_on_any_database(
        store: AuthStore, db: Database) -> None:
    """The rule must not depend on the database's collation: MariaDB's default utf8mb4 collation compares text
    case-insensitively, so ``users.name`` has a binary one there (else ``ALICE`` would sign in as ``alice``, and
    each spelling would be its own failed-sign-in counter in ``signin_limits``)."""
    await store.create_user("alice", PASSWORD)
    assert await store.authenticate("ALICE", PASSWORD) is None  # as on SQLite and PostgreSQL
    with pytest.raises(NotFound):
        await store.user("Alice")


@pytest.mark.parametrize("name", ["", " alice", "-alice", ".alice", "a" * 65, "al ice", "a/b", "ali\u00e9",
                                  "alice\n", "a:b"])
async def test_bad_user_names_are_refused(store: AuthStore, name: str) -> None:
    with pytest.raises(InvalidName):
        await store.create_user(name, PASSWORD)
    assert await store.count_users() == 0


@pytest.mark.parametrize("password", ["short", "x" * 1025, "\u00e9" * 513])
async def test_unusable_passwords_are_refused(store: AuthStore, password: str) -> None:
    with pytest.raises(PasswordError):
        await store.create_user("alice", password)
    assert await store.count_users() == 0


async def test_the_stored_hash_is_salted_scrypt_and_never_holds_the_password(
        store: AuthStore, engine: AsyncEngine) -> None:
    await store.create_user("alice", PASSWORD)
    await store.create_user("bob", PASSWORD)
    async with engine.connect() as conn:
        hashes = (await conn.execute(select(USERS.c.password_hash).order_by(USERS.c.id))).scalars().all()
    assert len(set(hashes)) == 2  # same password, different salts
    for stored in hashes:
        assert stored.startswith("scrypt$") and stored != PASSWORD
        assert PASSWORD not in stored and PASSWORD.encode().hex() not in stored


async def test_authenticate_right_wrong_unknown_and_disabled(store: AuthStore) -> None:
    alice = await store.create_user("alice", PASSWORD)
    assert await store.authenticate("alice", PASSWORD) == alice
    assert await store.authenticate("alice", PASSWORD + "!") is None
    assert await store.authenticate("alice", "") is None
    assert await store.authenticate("nobody", PASSWORD) is None
    assert await store.authenticate("bad name", PASSWORD) is None
    await store.set_disabled("alice")
    assert await store.authenticate("alice", PASSWORD) is None
    assert await store.count_users() == 0 and await store.count_users(enabled_only=False) == 1
    await store.set_disabled("alice", False)
    assert await store.authenticate("alice", PASSWORD) is not None


async def test_tokens_resolve_by_kind_and_stop_when_revoked(store: AuthStore, engine: AsyncEngine) -> None:
    alice = await store.create_user("alice", PASSWORD)
    secrets = {}
    for kind, prefix in (("session", "vix_s_"), ("api", "vix_a_"), ("worker", "vix_w_")):
        secret, token = await store.issue(kind, f"my {kind}", user_id=None if kind == "worker" else alice.id)
        assert secret.startswith(prefix) and len(secret) > 40 and token.kind == kind
        secrets[kind] = (secret, token)
    api_secret, api_token = secrets["api"]
    resolved = await store.resolve(api_secret, ("api",))
    assert resolved is not None and resolved[0].id == api_token.id and resolved[1] == alice
    assert await store.resolve(api_secret, ("session", "worker")) is None  # another kind
    assert await store.resolve(api_secret + "x", ("api",)) is None
    assert await store.resolve("vix_a_" + "A" * 43, ("api",)) is None
    worker = await store.resolve(secrets["worker"][0], ("worker",))
    assert worker is not None and worker[1] is None
    async with engine.connect() as conn:
        stored = (await conn.execute(select(TOKENS))).all()
    for row in stored:
        for secret, _ in secrets.values():
            assert secret not in str(tuple(row))  # only the hash is kept
    revoked = await store.revoke(api_token.id, kind="api", user_id=alice.id)
    assert revoked.revoked_at is not None
    assert await store.resolve(api_secret, ("api",)) is None
    assert (await store.revoke(api_token.id, kind="api")).revoked_at == revoked.revoked_at  # idempotent


async def test_a_token_is_revoked_only_by_its_owner_and_kind(store: AuthStore) -> None:
    alice = await store.create_user("alice", PASSWORD)
    bob = await store.create_user("bob", PASSWORD)
    secret, token = await store.issue("api", "alices", user_id=alice.id)
    with pytest.raises(NotFound):
        await store.revoke(token.id, kind="api", user_id=bob.id)
    with pytest.raises(NotFound):
        await store.revoke(token.id, kind="worker")
    assert await store.resolve(secret, ("api",)) is not None
    assert [t.name for t in await store.tokens(kind="api", user_id=bob.id)] == []
    assert [t.name for t in await store.tokens(kind="api", user_id=alice.id)] == ["alices"]


async def test_bad_token_names_are_refused(store: AuthStore) -> None:
    for name in ("", "   ", "x" * 256, "a\nb"):
        with pytest.raises(InvalidName):
            await store.issue("api", name)
    with pytest.raises(ValueError, match="kind"):
        await store.issue("root", "x")


async def test_an_expired_token_does_not_resolve(store: AuthStore) -> None:
    alice = await store.create_user("alice", PASSWORD)
    secret, _ = await store.issue("api", "gone", user_id=alice.id, ttl=timedelta(seconds=-1))
    assert await store.resolve(secret, ("api",)) is None
    secret, token = await store.issue("api", "a day", user_id=alice.id, ttl=timedelta(days=1))
    assert await store.resolve(secret, ("api",)) is not None
    assert token.expires_at is not None and _aware(token.expires_at) > datetime.now(UTC) + timedelta(hours=23)


async def _set_token(engine: AsyncEngine, token_id: int, **values: object) -> None:
    async with engine.begin() as conn:
        await conn.execute(update(TOKENS).where(TOKENS.c.id == token_id).values(**values))


async def test_last_used_is_written_at_most_once_a_minute(store: AuthStore, engine: AsyncEngine) -> None:
    alice = await store.create_user("alice", PASSWORD)
    secret, token = await store.issue("api", "script", user_id=alice.id)
    assert token.last_used_at is None
    await store.resolve(secret, ("api",))
    [first] = await store.tokens(kind="api")
    assert first.last_used_at is not None
    await store.resolve(secret, ("api",))
    [second] = await store.tokens(kind="api")
    assert second.last_used_at == first.last_used_at  # not written again within the minute
    earlier = datetime.now(UTC) - timedelta(minutes=2)
    await _set_token(engine, token.id, last_used_at=earlier)
    await store.resolve(secret, ("api",))
    [third] = await store.tokens(kind="api")
    assert _aware(third.last_used_at) > earlier + timedelta(minutes=1)  # type: ignore[operator]


async def test_a_session_lasts_while_it_is_used(store: AuthStore, engine: AsyncEngine) -> None:
    alice = await store.create_user("alice", PASSWORD)
    secret, token = await store.issue("session", "web", user_id=alice.id, ttl=timedelta(hours=1))
    now = datetime.now(UTC)
    await _set_token(engine, token.id, last_used_at=now - timedelta(minutes=30),
                     expires_at=now + timedelta(minutes=30))
    assert await store.resolve(secret, ("session",)) is not None
    [session] = await store.tokens(kind="session")
    assert _aware(session.expires_at) > now + timedelta(minutes=55)  # type: ignore[operator]


async def test_disabling_a_user_revokes_their_tokens_for_good(store: AuthStore) -> None:
    alice = await store.create_user("alice", PASSWORD)
    bob = await store.create_user("bob", PASSWORD)
    session, _ = await store.issue("session", "web", user_id=alice.id)
    api, _ = await store.issue("api", "script", user_id=alice.id)
    bobs, _ = await store.issue("api", "bobs", user_id=bob.id)
    await store.set_disabled("alice")
    assert await store.resolve(session, ("session",)) is None and await store.resolve(api, ("api",)) is None
    for kind in ("session", "api"):
        assert all(t.revoked_at is not None for t in await store.tokens(kind=kind, user_id=alice.id))
    assert await store.resolve(bobs, ("api",)) is not None
    late, _ = await store.issue("api", "after", user_id=alice.id)
    assert await store.resolve(late, ("api",)) is None  # a disabled user's token never resolves
    await store.set_disabled("alice", False)
    assert await store.resolve(api, ("api",)) is None  # enabling again does not bring old tokens back
    assert await store.resolve(late, ("api",)) is not None


async def test_a_new_password_ends_sessions_and_keeps_api_tokens(store: AuthStore) -> None:
    alice = await store.create_user("alice", PASSWORD)
    session, _ = await store.issue("session", "web", user_id=alice.id)
    api, _ = await store.issue("api", "script", user_id=alice.id)
    await store.set_password("alice", "a new password")
    assert await store.resolve(session, ("session",)) is None
    assert await store.resolve(api, ("api",)) is not None
    assert await store.authenticate("alice", PASSWORD) is None
    assert await store.authenticate("alice", "a new password") is not None
    with pytest.raises(PasswordError):
        await store.set_password("alice", "short")
    with pytest.raises(NotFound):
        await store.set_password("nobody", "long enough password")


async def test_revoke_secret_signs_out(store: AuthStore) -> None:
    alice = await store.create_user("alice", PASSWORD)
    session, _ = await store.issue("session", "web", user_id=alice.id)
    await store.revoke_secret(session)
    await store.revoke_secret("vix_s_unknown")  # nothing happens
    assert await store.resolve(session, ("session",)) is None
