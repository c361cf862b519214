"""The migrations build exactly the models' schema, on every database; the engine's settings are in force."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import CheckConstraint, inspect, text
from sqlalchemy.exc import IntegrityError

from tests.integration.conftest import BACKENDS, Database, scratch_database
from visionatrix.db import migrate
from visionatrix.db.tables import Base
from visionatrix.queue.manager import TaskQueue


async def test_migrated_schema_equals_the_models(db: Database):
    engine = db.engine()
    try:
        assert await migrate.schema_diff(engine) == []
        assert await migrate.current_revision(engine) == migrate.head_revision()
        async with engine.connect() as conn:
            found = await conn.run_sync(_constraints)
    finally:
        await engine.dispose()
    assert found == _model_constraints()


async def test_index_conditions_equal_the_models(db: Database):
    """Autogenerate does not compare an index's condition either: on PostgreSQL the claim and prompt indexes of
    ``tasks`` are partial (migration 0009) with the models' conditions; the other databases have no partial index."""
    engine = db.engine()
    try:
        async with engine.connect() as conn:
            indexes = await conn.run_sync(lambda sync: inspect(sync).get_indexes("tasks"))
    finally:
        await engine.dispose()
    found = {index["name"]: _condition(index.get("dialect_options", {}).get(f"{db.backend}_where"))
             for index in indexes}
    expected = {index.name: _condition(index.dialect_options["postgresql"]["where"] if db.backend == "postgresql"
                                       else None)
                for index in Base.metadata.tables["tasks"].indexes}
    assert found == expected
    if db.backend == "postgresql":
        assert expected["ix_tasks_claim_flow"] == "status = 'pending'"


def _condition(where: object) -> str | None:
    """An index condition without PostgreSQL's casts and parentheses (its catalog writes ``((status)::text =
    'pending'::text)`` for ``status = 'pending'``)."""
    return None if where is None else re.sub(r"::\w+|[()]", "", str(where)).strip()


def _constraints(sync) -> dict[str, dict[str, set]]:
    """What autogenerate does not compare: check constraints, and foreign keys' ON DELETE."""
    inspector = inspect(sync)
    return {table: {"check": {c["name"] for c in inspector.get_check_constraints(table)},
                    "fk": {(fk["name"], (fk.get("options") or {}).get("ondelete", "").upper())
                           for fk in inspector.get_foreign_keys(table)}}
            for table in Base.metadata.tables}


def _model_constraints() -> dict[str, dict[str, set]]:
    return {name: {"check": {c.name for c in table.constraints if isinstance(c, CheckConstraint)},
                   "fk": {(fk.name, (fk.ondelete or "").upper()) for fk in table.foreign_key_constraints}}
            for name, table in Base.metadata.tables.items()}


@pytest.mark.parametrize("backend", BACKENDS)
async def test_schema_diff_sees_a_missing_index_and_a_missing_column(backend: str, tmp_path: Path):
    """The equality test above can fail: a schema that drifted from the models shows up in the diff."""
    async with scratch_database(backend, tmp_path) as database:
        engine = database.engine()
        try:
            async with engine.begin() as conn:
                drop_index = "DROP INDEX ix_tasks_claim" + (" ON tasks" if backend == "mariadb" else "")
                await conn.execute(text(drop_index))
                await conn.execute(text("ALTER TABLE workers DROP COLUMN device"))
            diff = await migrate.schema_diff(engine)
        finally:
            await engine.dispose()
    changes = [entry for entry in diff if isinstance(entry, tuple)]
    assert any(kind == "add_index" and rest[0].name == "ix_tasks_claim" for kind, *rest in changes), diff
    assert any(kind == "add_column" and rest[1:3] and rest[1] == "workers" and rest[2].name == "device"
               for kind, *rest in changes), diff


async def test_postgresql_upgrade_to_partial_indexes_keeps_the_tasks_and_their_order(tmp_path: Path):
    """0008 to 0009 on a database with tasks: the indexes become partial; the claim still takes the first pending
    task by priority, a second task with a taken prompt id is still refused, and tasks without one still coexist."""
    async with scratch_database("postgresql", tmp_path, migrated=False) as database:
        engine = database.engine()
        try:
            await migrate.upgrade(engine, "0008")
            queue = TaskQueue(engine)
            first = (await queue.create("a", {}, {}))[0]
            urgent = (await queue.create("a", {}, {}, priority=5))[0]
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE tasks SET prompt_id = 'p1' WHERE id = :id"), {"id": first})
            await migrate.upgrade(engine)
            async with engine.connect() as conn:
                partial = set((await conn.execute(text("SELECT indexname FROM pg_indexes WHERE tablename = 'tasks'"
                                                       " AND indexdef LIKE '% WHERE %'"))).scalars())
            assert partial == {"ix_tasks_claim", "ix_tasks_claim_flow", "ix_tasks_prompt_id"}
            claimed = await queue.claim_next("w", ["a"])
            assert claimed is not None and claimed.id == urgent
            with pytest.raises(IntegrityError):
                async with engine.begin() as conn:
                    await conn.execute(text("UPDATE tasks SET prompt_id = 'p1' WHERE id = :id"), {"id": urgent})
            await queue.create("a", {}, {}, count=2)
            await queue.aclose()
        finally:
            await engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_upgrade_from_empty_reaches_head_and_a_second_run_changes_nothing(backend: str, tmp_path: Path):
    async with scratch_database(backend, tmp_path, migrated=False) as database:
        engine = database.engine()
        try:
            assert await migrate.current_revision(engine) is None
            await migrate.upgrade(engine)
            await migrate.upgrade(engine)
            assert await migrate.current_revision(engine) == migrate.head_revision()
            async with engine.connect() as conn:
                names = set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
            assert set(Base.metadata.tables) <= names
        finally:
            await engine.dispose()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_concurrent_upgrades_of_one_database_both_succeed(backend: str, tmp_path: Path):
    """The service and Database-FS workers may start together; each process migrates on start."""

    async with scratch_database(backend, tmp_path, migrated=False) as database:
        engines = [database.engine(), database.engine()]
        try:
            outcomes = await asyncio.gather(*(migrate.upgrade(engine) for engine in engines), return_exceptions=True)
            assert outcomes == [None, None]
            assert await migrate.schema_diff(engines[0]) == []
        finally:
            for engine in engines:
                await engine.dispose()


async def test_sqlite_runs_in_wal_with_a_busy_timeout_and_foreign_keys(tmp_path: Path):
    async with scratch_database("sqlite", tmp_path) as database:
        engine = database.engine()
        try:
            async with engine.connect() as conn:
                journal = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
                busy_ms = (await conn.execute(text("PRAGMA busy_timeout"))).scalar()
                foreign_keys = (await conn.execute(text("PRAGMA foreign_keys"))).scalar()
        finally:
            await engine.dispose()
    assert (journal, busy_ms, foreign_keys) == ("wal", 30000, 1)


async def test_datetimes_are_stored_as_utc_and_read_back_aware(db: Database):
    engine = db.engine()
    try:
        queue = TaskQueue(engine)
        [task_id] = await queue.create("resize", {}, {})
        async with engine.connect() as conn:
            if db.backend == "postgresql":
                raw = (await conn.execute(text("SELECT created_at AT TIME ZONE 'UTC' FROM tasks"))).scalar()
            else:
                raw = (await conn.execute(text("SELECT created_at FROM tasks"))).scalar()
        created_at = (await queue.get(task_id)).created_at
    finally:
        await engine.dispose()
    assert created_at is not None and created_at.tzinfo is not None
    stored = datetime.fromisoformat(raw) if isinstance(raw, str) else raw
    assert stored.tzinfo is None
    assert stored.replace(tzinfo=UTC) == created_at
    assert abs((datetime.now(UTC) - created_at).total_seconds()) < 60
