"""``users`` and ``worker-tokens``: who may sign in to the server, from the command line, on the server's database.

``users create NAME [--admin] [--password-stdin]``, ``users list [--json]``, ``users disable NAME``, ``users enable
NAME``, ``users passwd NAME [--password-stdin]``; ``worker-tokens create NAME [--expires-in-days N]``,
``worker-tokens list [--json]``, ``worker-tokens revoke ID``. A password is read from the terminal (twice, not
echoed) or, with ``--password-stdin``, from the first line of standard input; it is never printed or logged. A new
token's secret is printed once. Exit status: 0 done, 2 a bad argument (unknown user, name taken, short password).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from visionatrix.auth.passwords import PasswordError, check_password
from visionatrix.auth.store import AuthStore, InvalidName
from visionatrix.config import Settings
from visionatrix.db import migrate
from visionatrix.db.engine import create_engine
from visionatrix.errors import VisionatrixError
from visionatrix.server import jsonio


class UsageError(VisionatrixError):
    """The command line asks for something impossible."""


def add_parsers(commands: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    users = commands.add_parser("users", help="create, list, disable users and set their passwords")
    sub = users.add_subparsers(dest="users_command", required=True, metavar="SUBCOMMAND")

    def child(parent: Any, name: str, help_text: str) -> argparse.ArgumentParser:
        parser = parent.add_parser(name, help=help_text)
        parser.add_argument("--database-uri", help="SQLAlchemy URL (DATABASE_URI)")
        common(parser)
        return parser

    create = child(sub, "create", "a new user (role user, or admin with --admin)")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="may manage flows, models, workers and every task")
    create.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    child(sub, "list", "every user with role and state").add_argument("--json", action="store_true")
    child(sub, "disable", "refuse the user's sign-ins; their sessions and API tokens stop at once").add_argument(
        "name")
    child(sub, "enable", "let a disabled user sign in again").add_argument("name")
    passwd = child(sub, "passwd", "set a user's password (ends their web sessions)")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from standard input")

    tokens = commands.add_parser("worker-tokens", help="create, list and revoke the tokens of Server-mode workers")
    tsub = tokens.add_subparsers(dest="tokens_command", required=True, metavar="SUBCOMMAND")
    tcreate = child(tsub, "create", "a new worker token; its secret is printed once")
    tcreate.add_argument("name", help="what the token is for (a worker's name)")
    tcreate.add_argument("--expires-in-days", type=int, help="default: until revoked")
    child(tsub, "list", "worker tokens (never their secrets)").add_argument("--json", action="store_true")
    child(tsub, "revoke", "revoke a worker token: its worker stops at its next call").add_argument("id", type=int)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            raise UsageError("the two passwords differ")
    try:
        check_password(password)
    except PasswordError as exc:
        raise UsageError(str(exc)) from None
    return password


async def _with_store(settings: Settings, work: Callable[[AuthStore], Awaitable[int]]) -> int:
    engine = create_engine(settings.database_uri)
    try:
        await migrate.upgrade(engine)
        return await work(AuthStore(engine))
    finally:
        await engine.dispose()


def _print_rows(rows: list[dict[str, Any]], as_json: bool, columns: tuple[str, ...]) -> None:
    if as_json:
        print(jsonio.dumps(rows))
        return
    for row in rows:
        print("  ".join(str(row[column]) for column in columns))


async def _users(args: argparse.Namespace, store: AuthStore) -> int:
    command = args.users_command
    if command == "create":
        password = _read_password(args.password_stdin)
        user = await store.create_user(args.name, password, admin=args.admin)
        print(f"created {'admin' if user.is_admin else 'user'} {user.name}", file=sys.stderr)
    elif command == "list":
        _print_rows([user.view() for user in await store.users()], args.json, ("name", "role", "disabled"))
    elif command in ("disable", "enable"):
        user = await store.set_disabled(args.name, command == "disable")
        print(f"{user.name} is {'disabled' if user.disabled else 'enabled'}", file=sys.stderr)
    else:
        await store.user(args.name)  # NotFound before asking for a password
        await store.set_password(args.name, _read_password(args.password_stdin))
        print(f"password of {args.name} changed", file=sys.stderr)
    return 0


async def _tokens(args: argparse.Namespace, store: AuthStore) -> int:
    command = args.tokens_command
    if command == "create":
        days = args.expires_in_days
        if days is not None and not 1 <= days <= 3650:
            raise UsageError("--expires-in-days must be from 1 to 3650")
        secret, token = await store.issue("worker", args.name, ttl=timedelta(days=days) if days else None)
        print(f"worker token {token.id} ({token.name}); give it to the worker as WORKER_AUTH (shown only now):",
              file=sys.stderr)
        print(secret)
    elif command == "list":
        _print_rows([token.view() for token in await store.tokens(kind="worker")], args.json,
                    ("id", "name", "created_at", "revoked"))
    else:
        token = await store.revoke(args.id, kind="worker")
        print(f"worker token {token.id} ({token.name}) revoked", file=sys.stderr)
    return 0


def command(args: argparse.Namespace, settings: Settings) -> int:
    work = _users if args.command == "users" else _tokens
    try:
        return asyncio.run(_with_store(settings, lambda store: work(args, store)))
    except InvalidName as exc:
        raise UsageError(str(exc)) from None

