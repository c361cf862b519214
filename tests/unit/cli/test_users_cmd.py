"""``users`` and ``worker-tokens`` on a real SQLite database, and the server's refusal to start with sign-in
required and nobody able to sign in."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

import pytest

from visionatrix.auth.store import AuthStore
from visionatrix.cli.main import main
from visionatrix.cli.serve import check_sign_in
from visionatrix.config import InvalidSetting, load_settings
from visionatrix.db import migrate
from visionatrix.db.engine import create_engine


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite+aiosqlite:///{tmp_path / 'users.db'}"
    monkeypatch.setenv("DATABASE_URI", uri)
    return uri


def _run(argv: list[str], monkeypatch: pytest.MonkeyPatch, stdin: str = "") -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(argv)


def _store_call(uri: str, call):
    async def run():
        engine = create_engine(uri)
        try:
            await migrate.upgrade(engine)
            return await call(AuthStore(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_users_create_list_disable_enable_and_passwd(database: str, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["users", "create", "alice", "--admin", "--password-stdin"], monkeypatch, "first-password\n") == 0
    assert _run(["users", "create", "bob", "--password-stdin"], monkeypatch, "bobs-password\n") == 0
    capsys.readouterr()
    assert _run(["users", "list", "--json"], monkeypatch) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(u["name"], u["role"], u["disabled"]) for u in listed] == [("alice", "admin", False),
                                                                       ("bob", "user", False)]
    assert _store_call(database, lambda s: s.authenticate("alice", "first-password")) is not None
    assert _run(["users", "passwd", "alice", "--password-stdin"], monkeypatch, "second-password\n") == 0
    assert _store_call(database, lambda s: s.authenticate("alice", "first-password")) is None
    assert _store_call(database, lambda s: s.authenticate("alice", "second-password")) is not None
    assert _run(["users", "disable", "bob"], monkeypatch) == 0
    assert _store_call(database, lambda s: s.authenticate("bob", "bobs-password")) is None
    assert _run(["users", "enable", "bob"], monkeypatch) == 0
    assert _store_call(database, lambda s: s.authenticate("bob", "bobs-password")) is not None
    out = capsys.readouterr()
    for secret in ("first-password", "second-password", "bobs-password"):
        assert secret not in out.out + out.err


def test_users_refuses_bad_input_with_status_2(database: str, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["users", "create", "carol", "--password-stdin"], monkeypatch, "short\n") == 2
    assert "at least 8 characters" in capsys.readouterr().err
    assert _run(["users", "create", "../etc", "--password-stdin"], monkeypatch, "long-enough\n") == 2
    assert "user name" in capsys.readouterr().err
    assert _run(["users", "create", "carol", "--password-stdin"], monkeypatch, "long-enough\n") == 0
    assert _run(["users", "create", "carol", "--password-stdin"], monkeypatch, "long-enough\n") == 2
    assert "exists already" in capsys.readouterr().err
    assert _run(["users", "disable", "nobody"], monkeypatch) == 2
    assert "nobody" in capsys.readouterr().err
    assert [u.name for u in _store_call(database, lambda s: s.users())] == ["carol"]


def test_worker_tokens_print_the_secret_once_and_revoke(database: str, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(["worker-tokens", "create", "gpu-1"], monkeypatch) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("vix_w_")
    resolved = _store_call(database, lambda s: s.resolve(secret, ("worker",)))
    assert resolved is not None and resolved[0].name == "gpu-1"
    assert _run(["worker-tokens", "list", "--json"], monkeypatch) == 0
    listed = capsys.readouterr().out
    assert secret not in listed and json.loads(listed)[0]["revoked"] is False
    assert _run(["worker-tokens", "revoke", str(resolved[0].id)], monkeypatch) == 0
    assert _store_call(database, lambda s: s.resolve(secret, ("worker",))) is None
    assert _run(["worker-tokens", "revoke", "999"], monkeypatch) == 2


@pytest.mark.parametrize(("env", "host", "required"), [
    ({}, "127.0.0.1", False), ({}, "localhost", False), ({}, "::1", False), ({}, "0.0.0.0", True),
    ({}, "192.168.1.5", True), ({"VIX_AUTH": "on"}, "127.0.0.1", True), ({"VIX_AUTH": "off"}, "0.0.0.0", False),
    ({"VIX_AUTH": "1"}, "127.0.0.1", True), ({"VIX_AUTH": "no"}, "::", False),
])
def test_sign_in_is_required_off_loopback_unless_set(env: dict[str, str], host: str, required: bool) -> None:
    assert load_settings(env).security.auth_required(host) is required


def test_a_bad_vix_auth_names_the_variable() -> None:
    with pytest.raises(InvalidSetting, match="VIX_AUTH"):
        load_settings({"VIX_AUTH": "maybe"})


def test_the_server_refuses_to_start_without_a_user_when_sign_in_is_required(database: str,
                                                                             caplog: pytest.LogCaptureFixture,
                                                                             ) -> None:
    exposed = load_settings({"DATABASE_URI": database, "VIX_HOST": "0.0.0.0"})
    with pytest.raises(InvalidSetting, match="users create NAME --admin"):
        _store_call(database, lambda store: check_sign_in(exposed, store))
    _store_call(database, lambda store: store.create_user("admin", "long-enough", admin=True))
    _store_call(database, lambda store: check_sign_in(exposed, store))  # a user exists: it starts
    with caplog.at_level(logging.WARNING):
        open_exposed = load_settings({"DATABASE_URI": database, "VIX_HOST": "0.0.0.0", "VIX_AUTH": "off"})
        _store_call(database, lambda store: check_sign_in(open_exposed, store))
    assert any("VIX_AUTH=off on 0.0.0.0" in record.getMessage() for record in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        local = load_settings({"DATABASE_URI": database})
        _store_call(database, lambda store: check_sign_in(local, store))
    assert not caplog.records
