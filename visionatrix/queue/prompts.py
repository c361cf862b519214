"""ComfyUI prompts as tasks: ad-hoc graphs that any worker with all their node types may take.

A prompt's task has no flow of its own. Its ``flow`` is the *node set* of its graph — ``@graph:`` and a digest of
its sorted node types — and the ``node_sets`` table says which node types that name stands for. A worker asks for
the node sets it can run (every node type of the set registered on it) next to its installed flows, so the queue's
one claim statement serves both kinds of task. Node sets never change once written, so each process keeps those it
has read.

The prompt's own id (a UUID), the client that queued it and its ``extra_data`` are columns of the task
(``prompt_id``, ``client_id``, ``prompt_extra``), written in the transaction that creates the task.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, func, select
from sqlalchemy.dialects import mysql, postgresql, sqlite

from visionatrix.db.tables import NodeSet, Task
from visionatrix.queue import records
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.models import FileRecord, TaskRecord, TaskStatus

NODE_SET_PREFIX = "@graph:"
TASKS = cast(Table, Task.__table__)
T = TASKS.c
N = cast(Table, NodeSet.__table__)


def node_set_flow(node_types: Iterable[str]) -> str:
    """The ``flow`` of a graph made of ``node_types``: the same for every graph of the same types."""
    digest = hashlib.sha256("\n".join(sorted(set(node_types))).encode()).hexdigest()
    return f"{NODE_SET_PREFIX}{digest[:32]}"


def is_node_set(flow: str) -> bool:
    return flow.startswith(NODE_SET_PREFIX)


@dataclass
class Prompt:
    """What ``POST /prompt`` queues."""

    prompt_id: str
    graph: dict[str, Any]
    node_types: frozenset[str]
    client_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """``number``, ``extra_data`` (secrets removed), ``outputs`` (the output nodes to run)."""
    priority: int = 0


@dataclass
class PromptRecord:
    """A prompt's task and its prompt columns."""

    task: TaskRecord
    prompt_id: str
    client_id: str | None
    extra: dict[str, Any]


class PromptTasks:
    """Prompts on ``queue``'s database."""

    def __init__(self, queue: TaskQueue) -> None:
        self.queue = queue
        self._node_sets: dict[str, frozenset[str]] = {}

    async def create(self, prompt: Prompt, files: Sequence[FileRecord] = (), *,
                     before_commit: Callable[[list[int]], Awaitable[None]] | None = None,
                     owner_id: int | None = None, webhook: dict[str, Any] | None = None) -> int:
        """One pending task for ``prompt`` (its node set recorded first) owned by ``owner_id``, with its
        ``webhook`` (``{"url", "headers"}``); its id. ``before_commit`` as in ``TaskQueue.create``."""
        flow = node_set_flow(prompt.node_types)
        await self._record_node_set(flow, prompt.node_types)
        (task_id,) = await self.queue.create(
            flow, prompt.graph, {}, priority=prompt.priority, files=files, before_commit=before_commit,
            columns={"prompt_id": prompt.prompt_id, "client_id": prompt.client_id, "prompt_extra": prompt.extra,
                     "owner_id": owner_id, "webhook": webhook})
        self._node_sets[flow] = prompt.node_types
        return task_id

    async def _record_node_set(self, flow: str, node_types: frozenset[str]) -> None:
        if flow in self._node_sets:
            return
        row = {"flow": flow, "node_types": sorted(node_types), "created_at": datetime.now(UTC)}
        dialect = self.queue.engine.dialect.name
        if dialect == "postgresql":
            statement: Any = postgresql.insert(N).values(row).on_conflict_do_nothing()
        elif dialect == "sqlite":
            statement = sqlite.insert(N).values(row).on_conflict_do_nothing()
        else:
            statement = mysql.insert(N).values(row).prefix_with("IGNORE")
        async with self.queue.engine.begin() as conn:
            await conn.execute(statement)

    async def node_sets(self) -> dict[str, frozenset[str]]:
        """Every node set: its flow name and node types."""
        async with self.queue.engine.connect() as conn:
            known = list(self._node_sets)
            query = select(N.c.flow, N.c.node_types)
            if known:
                query = query.where(N.c.flow.not_in(known))
            for flow, types in (await conn.execute(query)).all():
                self._node_sets[flow] = frozenset(types)
        return dict(self._node_sets)

    def known_node_types(self, flow: str) -> frozenset[str] | None:
        """The node types of ``flow`` if this process has seen that node set (no query)."""
        return self._node_sets.get(flow)

    async def runnable_flows(self, node_types: Collection[str]) -> builtins.list[str]:
        """The node sets a worker with ``node_types`` can run."""
        have = set(node_types)
        return sorted(flow for flow, needs in (await self.node_sets()).items() if needs <= have)

    async def get(self, prompt_id: str) -> PromptRecord | None:
        found = await self._select(select(TASKS).where(T.prompt_id == prompt_id))
        return found[0] if found else None

    async def by_task(self, task_id: int) -> PromptRecord | None:
        """The prompt of task ``task_id``; None when it is a flow's task (or gone)."""
        found = await self._select(select(TASKS).where(T.id == task_id, T.prompt_id.is_not(None)))
        return found[0] if found else None

    async def by_tasks(self, task_ids: Collection[int]) -> builtins.list[PromptRecord]:
        if not task_ids:
            return []
        return await self._select(select(TASKS).where(T.id.in_(list(task_ids)), T.prompt_id.is_not(None)))

    async def list(self, statuses: Collection[TaskStatus] | None = None, *, limit: int = 10_000,
                   offset: int = 0, newest_first: bool = False,
                   owner_id: int | None = None) -> builtins.list[PromptRecord]:
        """Prompt tasks (those with a ``prompt_id``), of ``owner_id`` when given, oldest first unless
        ``newest_first``."""
        query = self._where(select(TASKS), statuses, owner_id)
        return await self._select(query.order_by(T.id.desc() if newest_first else T.id).limit(limit).offset(offset))

    async def _select(self, query: Any) -> builtins.list[PromptRecord]:
        async with self.queue.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            files = await self.queue._files(conn, [row.id for row in rows])
        return [PromptRecord(records.task_record(row, files.get(row.id, [])), row.prompt_id, row.client_id,
                             dict(row.prompt_extra or {})) for row in rows]

    @staticmethod
    def _where(query: Any, statuses: Collection[TaskStatus] | None, owner_id: int | None) -> Any:
        query = query.where(T.prompt_id.is_not(None))
        if statuses is not None:
            query = query.where(records.status_condition(statuses))
        if owner_id is not None:
            query = query.where(T.owner_id == owner_id)
        return query

    async def count(self, statuses: Collection[TaskStatus] | None, *, owner_id: int | None = None) -> int:
        """How many prompt tasks have one of ``statuses`` (any status when None), of ``owner_id`` when given."""
        query = self._where(select(func.count()).select_from(TASKS), statuses, owner_id)
        async with self.queue.engine.connect() as conn:
            return int((await conn.execute(query)).scalar() or 0)

