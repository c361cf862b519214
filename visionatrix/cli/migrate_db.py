"""``migrate``: bring the database schema up to date (the service also does this at start)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from sqlalchemy.exc import SQLAlchemyError

from visionatrix.config import Settings
from visionatrix.db import migrate
from visionatrix.db.engine import create_engine


def command(args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> None:
        engine = create_engine(settings.database_uri)
        try:
            await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except (SQLAlchemyError, OSError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        print(f"error: DATABASE_URI {engine_label(settings.database_uri)}: {reason}", file=sys.stderr)
        return 2
    print(f"database {engine_label(settings.database_uri)} is up to date", file=sys.stderr)
    return 0


def engine_label(uri: str) -> str:
    """The URL without its password."""
    scheme, sep, rest = uri.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        rest = f"{credentials.split(':')[0]}:***@{host}" if ":" in credentials else rest
    return f"{scheme}{sep}{rest}"
