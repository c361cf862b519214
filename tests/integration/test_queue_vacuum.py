"""PostgreSQL: the queue keeps its claims cheap at depth (``queue.vacuum``, ``queue.driver.CLAIM_SESSION``).

- After ``vacuum_every`` claims the queue vacuums ``tasks``: a claim's probe then reads a few index pages, where a
  queue that never vacuums walks the dead entries of every earlier claim (the same drain, the same table, compared
  with ``EXPLAIN (ANALYZE, BUFFERS)``).
- On a vacuumed table that was never analyzed (the planner believes a flow has 3 pending tasks; it has 98,000), the
  merged claim run on the queue's own claiming connection still probes the index in order: it reads a bounded part.
- A claim planned (and cached, as a generic plan) while the table held five rows still probes the index once it
  holds 100,000.
- A vacuum that fails is logged and changes nothing for the claims; SQLite and MariaDB never vacuum.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from tests.integration.conftest import Database, create_database, drop_database
from tests.integration.test_claim_depth import BUFFERS_BOUND, FILL, _check_bounded, _nodes
from visionatrix.db.postgres_writer import PostgresWriter
from visionatrix.queue import claim, merges
from visionatrix.queue.driver import CLAIM_SESSION
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.vacuum import TableVacuum


@pytest.fixture
def postgres(postgresql_database: Database) -> Database:
    return postgresql_database


async def _reset(engine: Any, rows: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE task_files, tasks, workers"))
        await conn.execute(text(FILL.text.replace("generate_series(1, 100000)", f"generate_series(1, {rows})")))


async def _claim_blocks(queue: TaskQueue) -> int:
    """Buffers the next single claim reads (run in a transaction that is rolled back)."""
    assert queue.driver is not None
    now = datetime.now(UTC)
    values = claim.claim_params(["noop"], None, "probe", "p" * 32, now + timedelta(seconds=60), now)
    statement = queue.driver.statement(("claim", False, None), lambda: (
        claim.claim_update(affinity=False), claim.CLAIMED_COLUMNS))
    async with queue.engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        transaction = driver.transaction()
        await transaction.start()
        try:
            found = await driver.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement.sql,
                                          *statement.args(values))
        finally:
            await transaction.rollback()
    plan = (found if isinstance(found, list) else json.loads(found))[0]["Plan"]
    return sum(node.get("Shared Hit Blocks", 0) + node.get("Shared Read Blocks", 0) for node in _nodes(plan)
               if node.get("Index Name") == "ix_tasks_claim_flow")


async def _drain(queue: TaskQueue, count: int) -> None:
    for _ in range(count):
        task = await queue.claim_next("w", ["noop", "absent"])
        assert task is not None
        await queue.mark_finished(task.id, task.lease_token, timings={}, outputs=[])


async def test_a_vacuuming_queue_keeps_the_claims_probe_short(postgres: Database) -> None:
    engine = postgres.engine()
    try:
        blocks = {}
        for every in (0, 1_000):
            await _reset(engine, 8_000)
            queue = TaskQueue(engine, vacuum_every=every)
            try:
                await _drain(queue, 3_000)
                if queue.vacuum is not None:
                    await queue.vacuum.aclose()  # the last one started ends
                    assert queue.vacuum.runs >= 2 and queue.vacuum.claims < 1_000
                else:
                    assert every == 0
                blocks[every] = await _claim_blocks(queue)
            finally:
                await queue.aclose()
        # never vacuumed: the probe reads the leaf pages of ~2,400 dead entries; vacuumed every 1,000 claims: of at
        # most the claims since the last vacuum
        assert blocks[1_000] <= 10 < blocks[0], blocks
        async with engine.connect() as conn:
            count = (await conn.execute(text(
                "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'tasks' "
                "AND schemaname = current_schema()"))).scalar_one()
        assert count >= 2
    finally:
        await engine.dispose()


async def test_the_merged_claim_keeps_the_index_order_on_a_vacuumed_unanalyzed_table(postgres: Database) -> None:
    engine = postgres.engine()
    queue = TaskQueue(engine, vacuum_every=0)
    try:
        await _reset(engine, 100_000)
        async with engine.begin() as conn:
            base = (await conn.execute(text("SELECT min(id) - 1 FROM tasks"))).scalar_one()
            for status in ("running", "finished"):
                await conn.execute(text(f"UPDATE tasks SET status = '{status}' WHERE id <= :last AND flow = 'noop'"),
                                   {"last": base + 2_000})
        async with engine.connect() as conn:
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(text("VACUUM tasks"))
        assert queue.driver is not None
        installed = ["noop", "absent"]
        now = datetime.now(UTC)
        values = claim.claim_params(installed, None, "w", "t" * 32, now + timedelta(seconds=60), now)
        statement = queue.driver.statement(("claim", False, None), lambda: (
            claim.claim_update(affinity=False), claim.CLAIMED_COLUMNS))
        sql, args = merges.claim_merge(statement, installed, None).build(
            [statement.args({**values, "p_lease_token": f"t{i}"}) for i in range(6)])
        # on the queue's claiming connection, as a claim runs (autocommit: these six tasks are claimed for real)
        rows = await queue.driver.writer.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, args)
        found = rows[0][0]
        plan = (found if isinstance(found, list) else json.loads(found))[0]["Plan"]
        _check_bounded("merged claim on a vacuumed table", plan, 6)
        assert plan["Actual Rows"] == 6 and plan["Shared Hit Blocks"] + plan["Shared Read Blocks"] < BUFFERS_BOUND
    finally:
        await queue.aclose()
        await engine.dispose()


async def test_a_failed_vacuum_is_logged_and_the_claims_go_on(tmp_path: Path, postgres: Database,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    bare = await create_database("postgresql", tmp_path, migrated=False)  # no tasks table to vacuum
    engine = bare.engine()
    try:
        vacuum = TableVacuum(engine, every=2)
        with caplog.at_level(logging.WARNING, logger="visionatrix.queue.vacuum"):
            vacuum.claimed()
            assert vacuum.claims == 1  # not due yet
            vacuum.claimed()  # due: runs in the background, the caller goes on
            await vacuum.aclose()
        assert vacuum.runs == 0 and vacuum.claims == 0
        assert "could not vacuum the tasks table" in caplog.text and 'relation "tasks" does not exist' in caplog.text
    finally:
        await engine.dispose()
        await drop_database(bare)


async def test_the_next_vacuum_waits_pause_ratio_times_the_last_ones_length(tmp_path: Path,
                                                                            postgres: Database) -> None:
    bare = await create_database("postgresql", tmp_path, migrated=False)  # each run fails fast but takes time
    engine = bare.engine()
    try:
        for ratio, started in ((1e6, False), (0.0, True)):
            vacuum = TableVacuum(engine, every=1, pause_ratio=ratio)
            vacuum.claimed()
            await vacuum.aclose()
            assert vacuum.last_s > 0 and vacuum.claims == 0
            vacuum.claimed()  # due by count; within the pause only with the huge ratio
            assert (vacuum.claims == 0) is started, (ratio, vacuum.claims)
            await vacuum.aclose()
    finally:
        await engine.dispose()
        await drop_database(bare)


def test_every_must_be_positive(postgres: Database) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TableVacuum(postgres.engine(), every=0)


async def test_sqlite_and_mariadb_queues_do_not_vacuum(db: Database) -> None:
    engine = db.engine()
    queue = TaskQueue(engine, vacuum_every=5)
    try:
        assert (queue.vacuum is not None) == (db.backend == "postgresql")
    finally:
        await queue.aclose()
        await engine.dispose()


def _literal(value: Any) -> str:
    """``value`` as SQL text, for ``EXECUTE name(...)`` (a utility statement takes no bound parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, list):
        return "ARRAY[" + ", ".join(_literal(v) for v in value) + "]::VARCHAR[]"
    if isinstance(value, datetime):
        return f"'{value.isoformat()}'::TIMESTAMPTZ"
    if isinstance(value, (int, float)):
        return repr(value)
    assert isinstance(value, str) and "'" not in value
    return f"'{value}'"


async def test_a_claim_planned_on_a_tiny_table_still_probes_the_index_when_it_grows(postgres: Database) -> None:
    """The generic plan a claiming connection caches while ``tasks`` holds five rows is reused after 100,000 more
    arrive: it must be the index probe (a sequential scan and sort, cheapest at five rows, then reads them all)."""
    engine = postgres.engine()
    queue = TaskQueue(engine, vacuum_every=0)
    writer = PostgresWriter(engine, connections=1, session=CLAIM_SESSION)
    try:
        await _reset(engine, 5)
        async with engine.connect() as conn:
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(text("VACUUM ANALYZE tasks"))
        assert queue.driver is not None
        now = datetime.now(UTC)
        values = claim.claim_params(["noop", "absent"], None, "w", "t" * 32, now + timedelta(seconds=60), now)
        statement = queue.driver.statement(("claim", False, None), lambda: (
            claim.claim_update(affinity=False), claim.CLAIMED_COLUMNS))
        call = "EXECUTE tiny_claim(" + ", ".join(_literal(v) for v in statement.args(values)) + ")"
        await writer.execute(f"PREPARE tiny_claim AS {statement.sql}")
        await writer.execute(f"EXPLAIN (FORMAT JSON) {call}")  # planned now, on five rows, and kept
        async with engine.begin() as conn:
            await conn.execute(FILL)
        rows = await writer.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {call}")
        found = rows[0][0]
        plan = (found if isinstance(found, list) else json.loads(found))[0]["Plan"]
        _check_bounded("claim planned on a tiny table", plan, 1)
        await writer.execute("DEALLOCATE tiny_claim")
    finally:
        await writer.aclose()
        await queue.aclose()
        await engine.dispose()
