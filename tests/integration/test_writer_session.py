"""``PostgresWriter(session=...)``: planner settings that hold on the writer's connections only.

The queue's claiming writer plans without bitmap scans and once per prepared statement
(``queue.driver.CLAIM_SESSION``); the settings are made when
the writer takes a connection from the pool and undone before it goes back, so no other user of the pool plans with
them. A setting that is not a plain word is refused before anything reaches the server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.conftest import Database, create_database, drop_database
from visionatrix.db.postgres_writer import PostgresWriter
from visionatrix.queue.driver import CLAIM_SESSION


@pytest.fixture
async def one_connection(tmp_path: Path, postgresql_database: Database) -> AsyncIterator[AsyncEngine]:
    """An engine whose pool holds exactly one connection: what the writer gives back is what the next user gets."""
    database = await create_database("postgresql", tmp_path, migrated=False)
    engine = database.engine(pool_size=1, max_overflow=0)
    try:
        yield engine
    finally:
        await engine.dispose()
        await drop_database(database)


async def _show(engine: AsyncEngine, name: str) -> tuple[str, int]:
    async with engine.connect() as conn:
        value = (await conn.execute(text(f"SHOW {name}"))).scalar_one()
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
    return value, pid


async def test_the_session_settings_hold_on_the_writers_connections_only(one_connection: AsyncEngine) -> None:
    assert CLAIM_SESSION == {"enable_bitmapscan": "off", "enable_seqscan": "off",
                             "plan_cache_mode": "force_generic_plan"}
    before, pid = await _show(one_connection, "enable_bitmapscan")
    assert before == "on"
    writer = PostgresWriter(one_connection, connections=1, session=CLAIM_SESSION)
    rows = await writer.execute("SELECT current_setting('enable_bitmapscan') AS value, "
                                "current_setting('plan_cache_mode') AS mode, pg_backend_pid() AS pid")
    # the pool's one connection, set for the writer
    assert (rows[0]["value"], rows[0]["mode"], rows[0]["pid"]) == ("off", "force_generic_plan", pid)
    await writer.aclose()
    assert await _show(one_connection, "enable_bitmapscan") == ("on", pid)  # reset before it went back
    assert (await _show(one_connection, "plan_cache_mode"))[0] == "auto"


async def test_a_writer_without_session_settings_changes_nothing(one_connection: AsyncEngine) -> None:
    writer = PostgresWriter(one_connection, connections=1)
    rows = await writer.execute("SELECT current_setting('enable_bitmapscan') AS value")
    assert rows[0]["value"] == "on"
    await writer.aclose()


@pytest.mark.parametrize("session", [{"enable_bitmapscan; DROP TABLE x": "off"}, {"enable_bitmapscan": "off'"},
                                     {"work_mem": "64 MB"}])
async def test_a_setting_that_is_not_a_plain_word_is_refused(one_connection: AsyncEngine,
                                                            session: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="not a setting"):
        PostgresWriter(one_connection, session=session)


async def test_an_unknown_setting_fails_the_write_and_leaves_the_pool_whole(one_connection: AsyncEngine) -> None:
    writer = PostgresWriter(one_connection, connections=1, session={"enable_nothing_such": "off"})
    with pytest.raises(Exception, match="enable_nothing_such"):
        await writer.execute("SELECT 1")
    assert writer.held == 0
    await writer.aclose()
    assert (await _show(one_connection, "enable_bitmapscan"))[0] == "on"  # the pool opens a fresh connection
