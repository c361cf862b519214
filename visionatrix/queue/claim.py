"""The claim, built per dialect. The manager runs these statements; this module only builds them.

Order: priority desc, then the flow the worker ran last (its models are loaded), then FIFO (id). The affinity is
two index-ordered candidates rather than one ``ORDER BY flow = :last`` (which no index can serve):

- leg A: the first pending task of ``last_flow`` by (priority desc, id) — index ``ix_tasks_claim_flow``;
- leg B: the first pending task of any installed flow by (priority desc, id) — index ``ix_tasks_claim``;

and the winner is the first of the two by (priority desc, affinity desc, id). Each leg locks with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL and MySQL/MariaDB (SQLite renders no lock clause: it has one writer).

PostgreSQL walks ``ix_tasks_claim_flow`` once per installed flow instead (``flow_heads``): ``unnest`` of the flows,
and for each, LATERAL, its first pending tasks by (priority desc, id), locked; the winner is the first head by
(priority desc, ``flow = last_flow`` desc, id), so the affinity needs no second leg. A leg ``flow = ANY($1)`` can
be served by ``ix_tasks_claim_flow`` only unordered (a scalar-array key on its first column), and the planner took
that path — every pending task of the flows fetched and sorted on each claim — whenever its estimate of the
pending rows was low (a table not analyzed since it filled, a generic plan): the claim's cost grew with the
backlog (``docs/queue.md``, "Depth"). One equality probe per flow is ordered by the index whatever the statistics.

- PostgreSQL and SQLite: ONE statement, ``UPDATE tasks SET ... WHERE id = (<candidate>) AND status = 'pending'
  RETURNING ...`` (on SQLite the UPDATE holds the write lock while it picks, which makes it a compare-and-set).
- MySQL/MariaDB (no ``UPDATE ... RETURNING``, no subquery on the updated table): a short transaction,
  ``SELECT ... FOR UPDATE SKIP LOCKED`` of the candidate with its columns, then ``UPDATE ... WHERE id = ?``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    String,
    Table,
    Update,
    bindparam,
    column,
    func,
    literal_column,
    select,
    true,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql

from visionatrix.db.tables import TASK_STATUSES, Task
from visionatrix.db.types import UTCDateTime

TASKS = cast(Table, Task.__table__)
PENDING = "pending"
RUNNING = "running"
CLAIMED_COLUMNS = (TASKS.c.id, TASKS.c.flow, TASKS.c.graph, TASKS.c.params, TASKS.c.attempt)
# The statements are built once, with these parameters; ``claim_params`` fills them in.
INSTALLED = "p_installed"
LAST_FLOW = "p_last_flow"
TASK_ID = "p_task_id"


def affinity_flow(installed_flows: Sequence[str], last_flow: str | None) -> str | None:
    """``last_flow`` when it is worth a second leg: set and still installed."""
    return last_flow if last_flow is not None and last_flow in installed_flows else None


def claim_params(installed_flows: Sequence[str], last_flow: str | None, worker_id: str, lease_token: str,
                 lease_expires_at: datetime, now: datetime) -> dict[str, Any]:
    """The parameters of the claim statements (the installed flows once each: PostgreSQL probes each one)."""
    return {INSTALLED: list(dict.fromkeys(installed_flows)), LAST_FLOW: last_flow, "p_worker_id": worker_id,
            "p_lease_token": lease_token, "p_lease_expires_at": lease_expires_at, "p_now": now}


def status_is(status: str) -> ColumnElement[bool]:
    """``status = 'pending'`` with the value in the SQL text (one of our constants, never input): a prepared
    statement's generic plan still sees a constant and keeps using the index, and SQLAlchemy has nothing to
    re-render per execution (as it would for a ``literal_execute`` parameter)."""
    if status not in TASK_STATUSES:
        raise ValueError(f"unknown status {status!r}")
    return TASKS.c.status == literal_column(f"'{status}'", String())


def _one() -> ColumnElement[int]:
    return literal_column("1")


def _leg(where: ColumnElement[bool], affinity: int, *, lock: bool) -> Select[Any]:
    leg = (select(TASKS.c.id, TASKS.c.priority, literal_column(str(affinity)).label("affinity"))
           .where(status_is(PENDING), where)
           .order_by(TASKS.c.priority.desc(), TASKS.c.id)
           .limit(_one()))
    return leg.with_for_update(skip_locked=True) if lock else leg


def installed_name(index: int) -> str:
    """The parameter of the ``index``-th installed flow in a claim built for a fixed number of flows."""
    return f"{INSTALLED}_{index}"


def installed_params(installed_flows: Sequence[str]) -> dict[str, str]:
    """The installed flows as the parameters of a claim built with ``flows=len(installed_flows)``."""
    return {installed_name(i): flow for i, flow in enumerate(installed_flows)}


def _in_installed(flows: int | None) -> ColumnElement[bool]:
    """SQLite, MySQL/MariaDB: ``flow`` among the installed flows, an expanding ``IN``, or with ``flows`` an ``IN`` of
    that many plain parameters (``installed_params``), which a driver can run without SQLAlchemy's expansion."""
    if flows is not None:
        return TASKS.c.flow.in_([bindparam(installed_name(i), type_=String()) for i in range(flows)])
    return TASKS.c.flow.in_(bindparam(INSTALLED, expanding=True))


def flow_heads(limit: ColumnElement[int]) -> Any:
    """PostgreSQL: ``unnest(:p_installed) AS f(flow) JOIN LATERAL (<the first `limit` pending tasks of f.flow by
    (priority desc, id), locked>) AS h`` — one ordered probe of ``ix_tasks_claim_flow`` per installed flow (one
    array parameter: the same prepared statement for any number of flows). Columns ``h.id``, ``h.priority``,
    ``h.flow``."""
    flows = (func.unnest(bindparam(INSTALLED, type_=postgresql.ARRAY(String())))
             .table_valued(column("flow", String())).render_derived(name="f"))
    head = (select(TASKS.c.id, TASKS.c.priority, TASKS.c.flow)
            .where(status_is(PENDING), TASKS.c.flow == flows.c.flow)
            .order_by(TASKS.c.priority.desc(), TASKS.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .lateral("h"))
    return flows.join(head, true()), head


def _first_head(affinity: bool) -> Select[Any]:
    joined, head = flow_heads(_one())
    order = [head.c.priority.desc(), head.c.id]
    if affinity:
        order.insert(1, (head.c.flow == bindparam(LAST_FLOW, type_=String())).desc())
    return select(head.c.id).select_from(joined).order_by(*order).limit(_one())


def candidate(*, affinity: bool, dialect: str = "postgresql", lock: bool = True,
              flows: int | None = None) -> Select[Any]:
    """``SELECT id`` of the task to claim (at most one row); ``affinity``: ``last_flow`` first among equal
    priorities; ``flows``: see ``_in_installed``. PostgreSQL: ``flow_heads`` (always locked)."""
    if dialect == "postgresql":
        return _first_head(affinity)
    any_flow = _leg(_in_installed(flows), 0, lock=lock)
    if not affinity:
        return select(any_flow.subquery("b").c.id)
    last = _leg(TASKS.c.flow == bindparam(LAST_FLOW, type_=String()), 1, lock=lock)
    legs = [last.subquery("a"), any_flow.subquery("b")]
    both = union_all(*(select(leg.c.id, leg.c.priority, leg.c.affinity) for leg in legs)).subquery("c")
    return (select(both.c.id)
            .order_by(both.c.priority.desc(), both.c.affinity.desc(), both.c.id)
            .limit(_one()))


def _running_values() -> dict[str, Any]:
    """What a claim writes into the task's row: ``running`` (the lease), with ``started_at`` NULL until the worker
    reports that the execution starts (``lease.started``); till then the task shows as ``claimed``."""
    now: BindParameter[datetime] = bindparam("p_now", type_=UTCDateTime())
    return {
        "status": RUNNING,
        "worker_id": bindparam("p_worker_id", type_=String()),
        "lease_token": bindparam("p_lease_token", type_=String()),
        "lease_expires_at": bindparam("p_lease_expires_at", type_=UTCDateTime()),
        "attempt": TASKS.c.attempt + 1,
        "progress": 0.0,
        "current_node": None,
        "started_at": None,
        "updated_at": now,
    }


def claim_update(*, affinity: bool, dialect: str = "postgresql", flows: int | None = None) -> Update:
    """PostgreSQL and SQLite: the whole claim as one ``UPDATE ... RETURNING``; ``flows``: see ``_in_installed``."""
    chosen = candidate(affinity=affinity, dialect=dialect, flows=flows).scalar_subquery()
    return (update(TASKS)
            .where(TASKS.c.id == chosen, status_is(PENDING))
            .values(_running_values())
            .returning(*CLAIMED_COLUMNS))


def locked_candidate(*, affinity: bool) -> Select[Any]:
    """MySQL/MariaDB, step 1 of the transaction: the candidate's id, locked (``SKIP LOCKED`` in each leg)."""
    return candidate(affinity=affinity, dialect="mysql")


def update_locked() -> Update:
    """MySQL/MariaDB, step 2: the candidate locked in step 1 (``p_task_id``) becomes ``running``."""
    return update(TASKS).where(TASKS.c.id == bindparam(TASK_ID), status_is(PENDING)).values(_running_values())


def claimed_row() -> Select[Any]:
    """MySQL/MariaDB, step 3: the claimed task's columns (the row is locked by this transaction)."""
    return select(*CLAIMED_COLUMNS).where(TASKS.c.id == bindparam(TASK_ID))
