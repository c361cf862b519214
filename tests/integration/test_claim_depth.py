"""The claim on a deep, partly drained queue reads a bounded part of it, whatever the depth (issue 17 §1).

PostgreSQL: 100,000 tasks, 48,000 of them claimed and finished by mass updates (their old ``pending`` versions are
dead rows the index still points to; nothing vacuumed, and the table is not analyzed first: the planner's estimates
are as wrong as on a table that just filled). The claim, the merged claim and the merged finish are run under
``EXPLAIN (ANALYZE, BUFFERS)``: every scan of ``tasks`` returns at most the rows the statement takes, walks
``ix_tasks_claim_flow`` per installed flow, and the buffers read stay far below what fetching the 36,000 pending
tasks (the plan of ``flow = ANY(...)`` with a sort) costs. SQLite: the claim's legs walk an index in order (no
temporary B-tree over the pending tasks).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import text
from sqlalchemy.dialects import sqlite

from tests.integration.conftest import Database
from visionatrix.db.tables import Base
from visionatrix.queue import claim, lease, merges
from visionatrix.queue.claim import TASKS
from visionatrix.queue.manager import TaskQueue

ROWS = 100_000
DRAINED = 60_000
FILL = text(f"""
INSERT INTO tasks (flow, status, priority, params, graph, progress, attempt, cancel_requested, timings,
                   created_at, updated_at)
SELECT CASE WHEN n % 5 = 0 THEN 'other' ELSE 'noop' END, 'pending', 0, '{{}}'::json,
       '{{"1": {{"class_type": "Noop", "inputs": {{}}}}}}'::json, 0, 0, false, '{{}}'::json, now(), now()
FROM generate_series(1, {ROWS}) AS n
""")
# Two updates, as a claim and a finish make them: each leaves a dead version behind (status is indexed: no HOT).
# The ids follow ``n`` from the sequence's next value (the session's database has served other tests: not 1).
DRAIN = [text(f"UPDATE tasks SET status = '{status}' WHERE id <= :last AND flow = 'noop'")
         for status in ("running", "finished")]
BUFFERS_BOUND = 1_500
"""Well above what the probes read (the leaf pages of the dead entries before the first pending one: a few hundred
here), well below fetching every pending task of the flow (thousands of heap pages)."""


@pytest.fixture
def postgres(postgresql_database: Database) -> Database:
    return postgresql_database


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


async def _plan(driver: Any, sql: str, args: list[Any]) -> dict[str, Any]:
    """The statement's ``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` plan; what it changed is rolled back."""
    transaction = driver.transaction()
    await transaction.start()
    try:
        found = await driver.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, *args)
    finally:
        await transaction.rollback()
    return (found if isinstance(found, list) else json.loads(found))[0]["Plan"]


def _check_bounded(name: str, plan: dict[str, Any], taken: int) -> None:
    scans = [node for node in _nodes(plan) if node.get("Relation Name") == "tasks" and "Scan" in node["Node Type"]]
    assert scans, name
    for node in scans:
        assert "Index" in node["Node Type"] and "Bitmap" not in node["Node Type"], (name, node["Node Type"])
        assert node["Actual Rows"] <= taken, (name, node.get("Index Name"), node["Actual Rows"])
        assert node.get("Rows Removed by Filter", 0) <= taken, (name, node.get("Rows Removed by Filter"))
    blocks = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    assert blocks < BUFFERS_BOUND, (name, blocks)


async def test_the_claim_on_a_deep_partly_drained_postgresql_queue_reads_a_bounded_part(postgres: Database):
    engine = postgres.engine()
    queue = TaskQueue(engine)
    try:
        async with engine.begin() as conn:
            for table in ("task_files", "tasks", "workers"):
                await conn.execute(text(f"DELETE FROM {table}"))
            await conn.execute(FILL)
            base = (await conn.execute(text("SELECT min(id) - 1 FROM tasks"))).scalar_one()
        for drain in DRAIN:
            async with engine.begin() as conn:
                await conn.execute(drain, {"last": base + DRAINED})

        installed = ["noop", "absent"]
        first = await queue.claim_next("w", installed)  # FIFO: the first pending task of an installed flow
        assert first is not None and first.id == base + DRAINED + 1 and first.flow == "noop"
        claimed = [await queue.claim_next("w", installed, last_flow="noop") for _ in range(4)]
        assert [task.id - base for task in claimed if task is not None] == [DRAINED + 2, DRAINED + 3, DRAINED + 4,
                                                                             DRAINED + 6]  # n = 60005 is 'other'
        assert queue.driver is not None
        now = datetime.now(UTC)
        values = claim.claim_params(installed, "noop", "w", "t" * 32, now + timedelta(seconds=60), now)
        async with engine.connect() as conn:
            driver = (await conn.get_raw_connection()).driver_connection
            for affinity in (False, True):
                statement = queue.driver.statement(("claim", affinity, None), lambda a=affinity: (
                    claim.claim_update(affinity=a), claim.CLAIMED_COLUMNS))
                plan = await _plan(driver, statement.sql, statement.args(values))
                _check_bounded(f"claim, affinity {affinity}", plan, 1)
                probes = [node for node in _nodes(plan) if node.get("Index Name") == "ix_tasks_claim_flow"]
                assert probes and all("f.flow" in node["Index Cond"] for node in probes), probes
                merge = merges.claim_merge(statement, installed, "noop" if affinity else None)
                sql, args = merge.build([statement.args({**values, "p_lease_token": f"t{i}"}) for i in range(4)])
                _check_bounded(f"merged claim, affinity {affinity}", await _plan(driver, sql, args), 4)
            finish = queue.driver.statement(("finished",), lambda: (
                lease.returning(lease.finished(), (TASKS.c.flow,)), (TASKS.c.flow,)))
            writes = [finish.args(lease.params(task.id, task.lease_token, timings={}, now=now))
                      for task in claimed if task is not None]
            sql, args = merges.finish_merge(finish).build(writes)
            plan = await _plan(driver, sql, args)
            _check_bounded("merged finish", plan, 4)
            assert plan["Actual Rows"] == 4
            await conn.rollback()
    finally:
        await queue.aclose()
        await engine.dispose()


def test_sqlite_claim_legs_walk_an_index_in_order(tmp_path):
    engine = create_sync_engine(f"sqlite:///{tmp_path / 'plan.db'}")
    Base.metadata.create_all(engine)
    try:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            for flows in (1, 3):
                for affinity in (False, True):
                    compiled = claim.claim_update(affinity=affinity, dialect="sqlite", flows=flows).compile(
                        dialect=sqlite.dialect())
                    args = [None] * len(compiled.positiontup or [])
                    rows = raw.execute("EXPLAIN QUERY PLAN " + str(compiled), args).fetchall()
                    details = [row[3] for row in rows]
                    searches = [d for d in details if d.startswith("SEARCH tasks USING")]
                    assert len(searches) == (3 if affinity else 2), details  # the UPDATE's row, then each leg
                    assert all("INDEX ix_tasks_claim" in d or "PRIMARY KEY" in d for d in searches), details
                    # at most the one sort of the two legs' candidates (a row each), never one inside a leg
                    assert details.count("USE TEMP B-TREE FOR ORDER BY") == (1 if affinity else 0), details
    finally:
        engine.dispose()
