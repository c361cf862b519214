"""PostgreSQL: concurrent claims and finishes merged into one statement each (``db.postgres_writer.Merge``).

When every connection of the queue's writer is busy, the writes waiting for one run together: one round trip and
one commit for all of them instead of one each. Only writes of the same shape merge:

- claims with the same installed flows and the same affinity flow: ONE ``UPDATE ... FROM`` takes as many pending
  tasks as there are claims, in claim order (priority desc, the affinity flow first, FIFO), from the same
  per-flow probes as the single claim (``claim.flow_heads``, locked with ``FOR UPDATE SKIP LOCKED``), and hands
  them to the claims in the order they queued (what running them one after another would have done); each claim
  finds its row by its lease token;
- finishes without outputs: ONE ``UPDATE ... FROM unnest(...)``, each guarded by its own lease token as the single
  finish is; a finish whose token no longer owns its task gets no row (``LeaseLost``). The tasks are found by
  ``id = ANY(ids)`` (index probes), never by ``status = 'running'`` alone: that range of an index holds an entry
  for every task ever claimed until VACUUM removes the dead ones, and a plan joining on it reads them all.

The statements set exactly what the single ones set (``claim._running_values``, ``lease.finished``); a test compares
the rows both write. The arguments come from each write's own positional arguments, already through SQLAlchemy's
bind processing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from visionatrix.db.postgres_writer import Merge
from visionatrix.queue.claim import INSTALLED, LAST_FLOW
from visionatrix.queue.driver import DriverStatement

_HEADS = ("SELECT h.id, h.priority, {affinity} AS affinity FROM unnest($1::VARCHAR[]) AS f(flow) JOIN LATERAL ("
          "SELECT id, priority, flow FROM tasks WHERE status = 'pending' AND flow = f.flow "
          "ORDER BY priority DESC, id LIMIT $2 FOR UPDATE SKIP LOCKED) AS h ON true "
          "ORDER BY 2 DESC, 3 DESC, h.id LIMIT $2")
_CANDIDATES = {  # claim.flow_heads: the first $2 pending tasks of each installed flow, the best $2 of them
    False: f"c AS ({_HEADS.format(affinity='0')})",
    True: f"c AS ({_HEADS.format(affinity='CASE WHEN h.flow = $7::VARCHAR THEN 1 ELSE 0 END')})",
}
_CLAIM = (
    "WITH {candidates}, "
    "o AS (SELECT id, row_number() OVER (ORDER BY priority DESC, affinity DESC, id) AS n FROM c) "
    "UPDATE tasks SET status = 'running', progress = 0.0, current_node = NULL, worker_id = ($3::VARCHAR[])[o.n], "
    "attempt = tasks.attempt + 1, lease_token = ($4::VARCHAR[])[o.n], "
    "lease_expires_at = ($5::TIMESTAMPTZ[])[o.n], started_at = NULL, "
    "updated_at = ($6::TIMESTAMPTZ[])[o.n] "
    "FROM o WHERE tasks.id = o.id "
    "RETURNING tasks.id, tasks.flow, tasks.graph, tasks.params, tasks.attempt, tasks.lease_token")
_FINISH = (
    "UPDATE tasks SET status = 'finished', progress = 100.0, timings = f.timings::JSON, "
    "peak_vram_bytes = f.peak_vram_bytes, lease_token = NULL, lease_expires_at = NULL, current_node = NULL, "
    "finished_at = f.now, updated_at = f.now "
    "FROM unnest($1::BIGINT[], $2::VARCHAR[], $3::TEXT[], $4::TIMESTAMPTZ[], $5::BIGINT[]) "
    "AS f(id, lease_token, timings, now, peak_vram_bytes) "
    "WHERE tasks.id = ANY($1::BIGINT[]) AND tasks.id = f.id AND tasks.lease_token = f.lease_token "
    "AND tasks.status = 'running' "
    "RETURNING tasks.id, tasks.flow, f.lease_token")


def claim_merge(statement: DriverStatement, installed: Sequence[str], affinity_flow: str | None) -> Merge:
    """How a claim (``statement``: ``claim.claim_update`` on PostgreSQL) merges with the same flows' claims."""
    at = statement.position
    worker, token, expires, now = at("p_worker_id"), at("p_lease_token"), at("p_lease_expires_at"), at("p_now")
    flows, last = at(INSTALLED), at(LAST_FLOW) if affinity_flow is not None else None
    sql = _CLAIM.format(candidates=_CANDIDATES[affinity_flow is not None])

    def build(writes: list[Sequence[Any]]) -> tuple[str, list[Any]]:
        first = writes[0]
        args = [first[flows], len(writes), [w[worker] for w in writes], [w[token] for w in writes],
                [w[expires] for w in writes], [w[now] for w in writes]]
        if last is not None:
            args.append(first[last])
        return sql, args

    def split(writes: list[Sequence[Any]], rows: list[Any]) -> list[list[Any]]:
        by_token = {row[5]: tuple(row)[:5] for row in rows}
        return [[by_token[w[token]]] if w[token] in by_token else [] for w in writes]

    return Merge(key=("claim", tuple(installed), affinity_flow), build=build, split=split)


def finish_merge(statement: DriverStatement) -> Merge:
    """How a finish without outputs (``statement``: ``lease.finished`` returning the flow) merges with others."""
    at = statement.position
    task, token, timings, now = at("p_task_id"), at("p_lease_token"), at("p_timings"), at("p_now")
    peak = at("p_peak_vram_bytes")

    def build(writes: list[Sequence[Any]]) -> tuple[str, list[Any]]:
        return _FINISH, [[w[task] for w in writes], [w[token] for w in writes], [w[timings] for w in writes],
                         [w[now] for w in writes], [w[peak] for w in writes]]

    def split(writes: list[Sequence[Any]], rows: list[Any]) -> list[list[Any]]:
        found = {(row[0], row[2]): (row[1],) for row in rows}
        out = []
        for w in writes:  # the same finish twice: the first one wins, as one after the other
            row = found.pop((w[task], w[token]), None)
            out.append([row] if row is not None else [])
        return out

    return Merge(key=("finished",), build=build, split=split)
