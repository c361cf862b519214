"""The claim statement each dialect runs, checked as SQL text (no database): one statement, the right locks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.dialects import mysql, postgresql, sqlite

from visionatrix.db.tables import TASK_STATUSES, Task
from visionatrix.queue import claim
from visionatrix.queue.models import TaskStatus

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def sql(statement, dialect) -> str:
    return " ".join(str(statement.compile(dialect=dialect)).split())


def test_postgresql_claims_with_one_update_that_probes_each_installed_flow_skipping_locked_rows():
    text = sql(claim.claim_update(affinity=True), postgresql.dialect())

    assert text.startswith("UPDATE tasks SET")
    assert text.count("FOR UPDATE SKIP LOCKED") == 1
    # one ordered probe per flow (equality on the index's first column), never ``flow = ANY(...)``
    assert "FROM unnest(%(p_installed)s::VARCHAR[]) AS f(flow) JOIN LATERAL" in text
    assert "tasks.flow = f.flow ORDER BY tasks.priority DESC, tasks.id" in text
    assert "ANY" not in text
    assert "ORDER BY h.priority DESC, h.flow = %(p_last_flow)s::VARCHAR DESC, h.id" in text
    assert "RETURNING tasks.id, tasks.flow, tasks.graph, tasks.params, tasks.attempt" in text
    assert "attempt=(tasks.attempt +" in text


def test_sqlite_claims_with_one_compare_and_set_update():
    text = sql(claim.claim_update(affinity=False), sqlite.dialect())

    assert text.startswith("UPDATE tasks SET") and "RETURNING" in text
    assert "FOR UPDATE" not in text
    assert text.endswith("RETURNING id, flow, graph, params, attempt")
    assert text.count("tasks.status = ") == 2  # the candidate's filter and the guard of the UPDATE itself


def test_mysql_locks_the_candidate_then_updates_it_by_id():
    select_text = sql(claim.locked_candidate(affinity=True), mysql.dialect())
    update_text = sql(claim.update_locked(), mysql.dialect())

    assert select_text.count("FOR UPDATE SKIP LOCKED") == 2
    assert update_text.startswith("UPDATE tasks SET") and "WHERE tasks.id = %s AND tasks.status =" in update_text


def test_the_affinity_leg_is_used_only_for_a_last_flow_that_is_installed():
    assert claim.affinity_flow(["a", "b"], "b") == "b"
    assert claim.affinity_flow(["a", "b"], "c") is None
    assert claim.affinity_flow(["a", "b"], None) is None
    assert "UNION" in sql(claim.candidate(affinity=True, dialect="mysql"), mysql.dialect())
    assert "UNION" not in sql(claim.candidate(affinity=False, dialect="mysql"), mysql.dialect())
    assert "p_last_flow" in sql(claim.candidate(affinity=True), postgresql.dialect())
    assert "p_last_flow" not in sql(claim.candidate(affinity=False), postgresql.dialect())


def test_the_installed_flows_are_passed_once_each():
    params = claim.claim_params(["a", "b", "a"], None, "w", "token", NOW, NOW)
    assert params[claim.INSTALLED] == ["a", "b"]


def test_claim_params_fill_every_parameter_of_the_claim():
    params = claim.claim_params(["a"], "a", "w", "token", NOW + timedelta(seconds=60), NOW)
    for statement in (claim.claim_update(affinity=True), claim.locked_candidate(affinity=True)):
        named = {name for name in statement.compile(dialect=postgresql.dialect()).params if name.startswith("p_")}
        assert named <= set(params), named - set(params)
    named = {name for name in claim.claim_update(affinity=True).compile().params if name.startswith("p_")}
    assert named == set(params)


def test_the_pending_status_is_a_constant_in_the_sql_so_generic_plans_use_the_index():
    compiled = claim.candidate(affinity=False).params(p_installed=["a"]).compile(
        dialect=postgresql.dialect(), compile_kwargs={"render_postcompile": True})
    assert "tasks.status = 'pending'" in str(compiled)


def test_task_status_values_are_the_ones_the_table_allows():
    """Every status but ``claimed``, which is shown (a ``running`` row whose run has not started), not stored."""
    assert tuple(s.value for s in TaskStatus if s is not TaskStatus.CLAIMED) == TASK_STATUSES
    assert all(s.value == s.value.lower() for s in TaskStatus)
    [check] = [c for c in Task.__table__.constraints if c.name == "ck_tasks_status"]
    assert all(f"'{status}'" in str(check.sqltext) for status in TASK_STATUSES)
