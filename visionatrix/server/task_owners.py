"""Whose task is it, and how many may a user queue: the task routes, the event streams and ComfyUI's routes ask
here before showing a task to a user who is not an admin. Owners never change, so they are remembered (bounded); an
unknown task has no owner a user could match, so it stays hidden."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from aiohttp import web

from visionatrix.errors import NotFound
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.models import TaskRecord
from visionatrix.server.errors import TooManyRequests
from visionatrix.server.identity import Identity, check_owner, identity
from visionatrix.server.services import SERVICES, Services

MISSING = -2
"""The owner of a task that does not exist (never a user id)."""


class TaskOwners:
    MAX_ENTRIES = 50_000

    def __init__(self, queue: TaskQueue) -> None:
        self.queue = queue
        self._owners: OrderedDict[int, int | None] = OrderedDict()

    def remember(self, task_id: int, owner_id: int | None) -> None:
        self._owners[task_id] = owner_id
        self._owners.move_to_end(task_id)
        while len(self._owners) > self.MAX_ENTRIES:
            self._owners.popitem(last=False)

    async def owner(self, task_id: int) -> int | None:
        """The task's owner id; None when it has none; ``MISSING`` when there is no such task."""
        if task_id in self._owners:
            self._owners.move_to_end(task_id)
            return self._owners[task_id]
        found = await self.queue.owners([task_id])
        if task_id not in found:
            return MISSING
        self.remember(task_id, found[task_id])
        return found[task_id]

    async def visible(self, caller: Identity, event: dict[str, Any]) -> bool:
        """Whether ``caller`` may receive ``event``: an admin every event; a user the events of their own tasks and
        the events about no task that are not about workers or models."""
        if caller.is_admin:
            return True
        task_id = event.get("task_id")
        if not isinstance(task_id, int):
            kind = str(event.get("type", ""))
            return not kind.startswith(("worker", "model"))
        owner = await self.owner(task_id)
        return caller.user_id is not None and owner == caller.user_id


TASK_OWNERS = web.AppKey("task_owners", TaskOwners)


async def owned_task(request: web.Request, task_id: int) -> TaskRecord:
    """The task, when the caller may see it; ``NotFound`` otherwise (another user's task looks missing)."""
    task = await request.app[SERVICES].queue.get(task_id)
    check_owner(request, task.owner_id, "task", str(task_id))
    return task


async def check_task_owner(request: web.Request, task_id: int) -> None:
    """``NotFound`` unless the caller may see task ``task_id`` (which must exist)."""
    caller = identity(request)
    if caller.is_admin:
        return
    owner = await request.app[TASK_OWNERS].owner(task_id)
    if owner == MISSING or owner != caller.user_id:
        raise NotFound("task", str(task_id))


async def check_pending_limit(services: Services, caller: Identity, count: int) -> None:
    """``TooManyRequests`` when ``count`` more tasks would take a signed-in user past ``VIX_MAX_PENDING_PER_USER``
    (admins and the open server have no limit)."""
    limit = services.security.max_pending_per_user
    if caller.is_admin or caller.user_id is None or limit <= 0:
        return
    pending = await services.queue.pending_count(caller.user_id)
    if pending + count > limit:
        raise TooManyRequests("too_many_pending", f"{caller.name} has {pending} pending task(s); at most {limit} may "
                              f"wait at once (VIX_MAX_PENDING_PER_USER): wait for some to run or cancel them",
                              {"pending": pending, "limit": limit, "requested": count})
