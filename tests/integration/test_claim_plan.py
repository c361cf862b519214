"""On a 100,000-task PostgreSQL table the claim walks indexes: its plan has no ``Seq Scan on tasks``."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.sql import visitors

from tests.integration.conftest import Database
from visionatrix.queue import claim, lease, merges
from visionatrix.queue.claim import TASKS
from visionatrix.queue.manager import TaskQueue

ROWS = 100_000
FLOWS = 20
# One INSERT ... SELECT from generate_series: the server makes the rows (seconds, not minutes). Nine in ten tasks are
# finished, like a queue that has been in use; the pending ones spread over 20 flows and 5 priorities.
FILL = text(f"""
INSERT INTO tasks (flow, status, priority, params, graph, progress, attempt, cancel_requested, timings,
                   created_at, updated_at)
SELECT 'flow-' || ((n / 10) % {FLOWS}),
       CASE WHEN n % 10 = 0 THEN 'pending' ELSE 'finished' END,
       (n / 7) % 5, '{{}}'::json, '{{"1": {{"class_type": "Noop", "inputs": {{}}}}}}'::json, 0, 0, false, '{{}}'::json,
       now(), now()
FROM generate_series(1, {ROWS}) AS n
""")


def with_values(statement, values: dict):
    """A copy of ``statement`` whose bound parameters carry ``values`` (to render it with literal binds)."""

    def visit(bind) -> None:
        if bind.key in values:
            bind.value, bind.required, bind.callable = values[bind.key], False, None

    return visitors.cloned_traverse(statement, {}, {"bindparam": visit})


def _plan_text(rows) -> str:
    return "\n".join(row[0] for row in rows)


@pytest.fixture
def postgres(postgresql_database: Database) -> Database:
    return postgresql_database


async def test_claim_on_100k_tasks_uses_indexes_not_a_sequential_scan(postgres: Database):
    engine = postgres.engine()
    try:
        async with engine.begin() as conn:
            for table in ("task_files", "tasks", "workers"):
                await conn.execute(text(f"DELETE FROM {table}"))
            started = time.perf_counter()
            await conn.execute(FILL)
            fill_s = time.perf_counter() - started
        async with engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE tasks"))
            assert (await conn.execute(text("SELECT count(*) FROM tasks"))).scalar() == ROWS
        assert fill_s < 30, f"filling {ROWS} rows took {fill_s:.1f} s"

        installed = [f"flow-{i}" for i in range(0, FLOWS, 2)]
        now = datetime.now(UTC)
        values = claim.claim_params(installed, "flow-4", "w", "t" * 32, now + timedelta(seconds=60), now)
        statements = {
            "candidate": claim.candidate(affinity=False),
            "candidate with affinity": claim.candidate(affinity=True),
            "claim update with affinity": claim.claim_update(affinity=True),
            "claim update": claim.claim_update(affinity=False),
        }
        async with engine.connect() as conn:
            for name, statement in statements.items():
                bound = with_values(statement, values)
                sql = str(bound.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
                plan = _plan_text((await conn.exec_driver_sql("EXPLAIN " + sql)).all())
                assert "Seq Scan on tasks" not in plan, f"{name}:\n{plan}"
                assert "Index" in plan, f"{name}:\n{plan}"
            await conn.rollback()

        queue = TaskQueue(engine)
        for name, (sql, args) in _merged_statements(queue, installed, values).items():
            async with engine.connect() as conn:
                driver = (await conn.get_raw_connection()).driver_connection
                plan = _plan_text(await driver.fetch("EXPLAIN " + sql, *args))
            assert "Seq Scan on tasks" not in plan, f"{name}:\n{plan}"
            assert "Index" in plan, f"{name}:\n{plan}"
        task = await queue.claim_next("w", installed, last_flow="flow-4")
        assert task is not None and task.flow == "flow-4"
        record = await queue.get(task.id)
        assert record.priority == 4  # the highest priority a pending task of an installed flow has
        await queue.aclose()
    finally:
        await engine.dispose()


def _merged_statements(queue: TaskQueue, installed: list[str], values: dict) -> dict[str, tuple[str, list]]:
    """The merged claims (with and without affinity) and finish of four writes each (``queue.merges``)."""
    assert queue.driver is not None
    found = {}
    for affinity in (False, True):
        statement = queue.driver.statement(("claim", affinity, None), lambda a=affinity: (
            claim.claim_update(affinity=a, dialect="postgresql"), claim.CLAIMED_COLUMNS))
        merge = merges.claim_merge(statement, installed, "flow-4" if affinity else None)
        writes = [statement.args({**values, "p_lease_token": f"t{i}"}) for i in range(4)]
        found[f"merged claim, affinity {affinity}"] = merge.build(writes)
    statement = queue.driver.statement(("finished",), lambda: (
        lease.returning(lease.finished(), (TASKS.c.flow,)), (TASKS.c.flow,)))
    writes = [statement.args(lease.params(i, f"t{i}", timings={}, now=datetime.now(UTC))) for i in range(1, 5)]
    found["merged finish"] = merges.finish_merge(statement).build(writes)
    return found
