"""The webhooks' signing key on every database: generated once and kept in ``server_secrets``, so server processes
that start together (and later ones) all sign with the same key; ``VIX_WEBHOOK_SECRET`` wins when given."""

from __future__ import annotations

import asyncio

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.conftest import Database
from visionatrix.server.webhooks.signing import SECRETS, load_secret


async def _forget(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(delete(SECRETS))


async def test_processes_starting_together_agree_on_one_stored_key(db: Database) -> None:
    engines = [db.engine() for _ in range(4)]
    try:
        await _forget(engines[0])
        keys = await asyncio.gather(*(load_secret(engine, None) for engine in engines for _ in range(2)))
        assert len(set(keys)) == 1 and len(keys[0]) == 64
        async with engines[0].connect() as conn:
            assert (await conn.execute(select(func.count()).select_from(SECRETS))).scalar_one() == 1
        assert await load_secret(engines[1], None) == keys[0], "a later start reads the kept key"
        assert await load_secret(engines[2], "configured") == "configured"
    finally:
        for engine in engines:
            await engine.dispose()
