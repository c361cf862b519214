"""The webhooks' signature and its key.

A delivery carries ``X-Visionatrix-Timestamp: <unix seconds>`` and ``X-Visionatrix-Signature: sha256=<hex>``, the
HMAC-SHA256 of ``f"{timestamp}.{body}"`` under the key. The key is ``VIX_WEBHOOK_SECRET`` or, when that is unset,
one generated once and kept in ``server_secrets`` (the first server process to start inserts it; any other reads
it), so every server process in front of one database signs with the same key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from visionatrix.db.tables import ServerSecret

SECRETS = cast(Table, ServerSecret.__table__)
SECRET_NAME = "webhook_secret"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Visionatrix-Signature`` value of ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


async def load_secret(engine: AsyncEngine, configured: str | None) -> str:
    """``configured`` when given; otherwise the key kept in ``server_secrets``, generated and stored on first use
    (a process that loses the race to insert it reads the winner's)."""
    if configured:
        return configured
    for _ in range(3):
        found = await _stored(engine)
        if found is not None:
            return found
        try:
            async with engine.begin() as conn:
                await conn.execute(insert(SECRETS).values(name=SECRET_NAME, value=secrets.token_hex(32),
                                                          created_at=datetime.now(UTC)))
        except IntegrityError:  # another server process stored it first: read theirs
            continue
    found = await _stored(engine)
    if found is None:  # pragma: no cover - an insert either succeeded or met the row
        raise RuntimeError("the webhook signing key could neither be stored nor read")
    return found


async def _stored(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        value = (await conn.execute(select(SECRETS.c.value).where(SECRETS.c.name == SECRET_NAME))).scalar()
    return None if value is None else str(value)
