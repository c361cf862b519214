"""``run`` with ``VIX_MODE=WORKER``: the composition root of a worker outside the server.

- ``VIX_HOST`` unset — Database-FS: the server's database (``DATABASE_URI``, never migrated from here: a database
  behind the code is refused) and its tasks-files folder (``TASKS_FILES_DIR``, mounted here).
- ``VIX_HOST=http://server:port`` — Server mode: HTTP only; ``TASKS_FILES_DIR`` holds temporary files.

The installed flows are ``VIX_WORKER_FLOWS`` or every flow whose node types and model files this worker has (the
local flow folders in Database-FS mode, the server's list in Server mode), looked at again every
``REFRESH_FLOWS_S``. SIGINT/SIGTERM: no new claims, the running task is finished or handed back, results uploaded,
exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
from sqlalchemy.exc import SQLAlchemyError

from visionatrix.cli import model_store
from visionatrix.cli.migrate_db import engine_label
from visionatrix.cli.model_store import ModelStore
from visionatrix.cli.nodes_list import load_registry
from visionatrix.config import DEFAULT_DATABASE_URI, InvalidSetting, Settings
from visionatrix.db import migrate
from visionatrix.db.engine import create_engine
from visionatrix.executor.run import Executor, ExecutorSettings
from visionatrix.flows.catalog import FlowCatalog
from visionatrix.flows.installed import runnable_flows, why_not_runnable
from visionatrix.nodes.registry import NodeRegistry
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.wakeups import TaskWakeups
from visionatrix.storage.files import TaskStorage
from visionatrix.worker.daemon import Worker, WorkerOptions
from visionatrix.worker.db_source import DatabaseSource
from visionatrix.worker.http_source import HttpSource
from visionatrix.worker.models import WorkerModels
from visionatrix.worker.source import SourceStopped, TaskSource

log = logging.getLogger(__name__)

REFRESH_FLOWS_S = 30.0
RETRY_MAX_S = 10.0


def command(settings: Settings) -> int:
    try:
        asyncio.run(run_worker(settings))
    except (InvalidSetting, SourceStopped) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set or SIGINT/SIGTERM arrives."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    registry = load_registry(settings)
    folders = model_store.build_folders(settings)
    executor = Executor(registry, ExecutorSettings(
        device=settings.device, temp_dir=settings.temp_dir, max_image_pixels=settings.max_image_pixels,
        cache_max_entries=settings.cache_max_entries, cache_max_bytes=settings.cache_max_bytes,
        model_folders=folders, ram_cache_bytes=settings.ram_cache_bytes,
        vram_reserve_bytes=settings.vram_reserve_bytes, remote_vae_decoders=settings.remote_vae_decoders))
    try:
        store = model_store.build_store(settings, await model_store.read_catalog(settings), folders)
        try:
            if settings.server_url is not None:
                await _run_http(settings, registry, executor, store, stop)
            else:
                await _run_database(settings, registry, executor, store, stop)
        finally:
            await store.installer.aclose()
    finally:
        executor.close()


async def _run_database(settings: Settings, registry: NodeRegistry, executor: Executor, store: ModelStore,
                        stop: asyncio.Event) -> None:
    engine = create_engine(settings.database_uri)
    label = engine_label(settings.database_uri)
    try:
        try:
            current = await migrate.current_revision(engine)
        except (SQLAlchemyError, OSError) as exc:
            raise InvalidSetting(f"DATABASE_URI {label}: {_first_line(exc)}") from None
        if current != migrate.head_revision():
            raise InvalidSetting(f"DATABASE_URI {label} is at migration {current or 'none'}, this worker needs "
                                 f"{migrate.head_revision()}: start the server (or `python -m visionatrix migrate`) "
                                 f"first")
        queue = TaskQueue(engine, lease_s=settings.task_lease_s, max_attempts=settings.task_max_attempts,
                          vacuum_every=settings.queue_vacuum_every)
        storage = TaskStorage(settings.tasks_files_dir, max_upload_bytes=settings.max_upload_bytes)
        flows = FlowCatalog(list(settings.flows_dirs), settings.user_flows_dir, registry.object_info(),
                            models_catalog=store.catalog.raw)
        node_types = set(registry.object_info())

        def local_flows() -> list[dict[str, Any]]:
            return [flow.info() for flow in flows.flows()]

        installed = _installed(settings, node_types, local_flows, store)
        async with TaskWakeups(engine) as wakeups:
            source = DatabaseSource(queue, storage, mode="WORKER_DB",
                                    wakeups=wakeups if wakeups.supported else None, wakeup=None,
                                    poll_min_s=settings.poll_min_s, poll_max_s=settings.poll_max_s,
                                    node_types=node_types)
            await _run(settings, executor, source, installed, store, stop, where=f"database {label}")
        await queue.aclose()
    finally:
        await engine.dispose()


async def _run_http(settings: Settings, registry: NodeRegistry, executor: Executor, store: ModelStore,
                    stop: asyncio.Event) -> None:
    assert settings.server_url is not None
    ignored = [name for name, changed in (("VIX_PORT", settings.port != Settings().port),
                                          ("DATABASE_URI", settings.database_uri != DEFAULT_DATABASE_URI))
               if changed]
    if ignored:
        log.warning("Server-mode worker: %s ignored (a port belongs in VIX_HOST; the server owns the database)",
                    " and ".join(ignored))
    source = HttpSource(settings.server_url, auth=settings.worker_auth, temp_dir=settings.tasks_files_dir,
                        retry_max_s=RETRY_MAX_S)
    node_types = set(registry.object_info())
    server_flows: list[dict[str, Any]] = []
    fetched = asyncio.Event()

    def remote_flows() -> list[dict[str, Any]]:
        return server_flows

    async def refresh() -> None:
        delay_s = 0.5
        while not stop.is_set():
            try:
                server_flows[:] = await _fetch_flows(settings)
                fetched.set()
                delay_s = REFRESH_FLOWS_S
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                log.warning("cannot read the server's flows (%s); retrying", exc)
                delay_s = min(RETRY_MAX_S, delay_s * 2) if not fetched.is_set() else REFRESH_FLOWS_S
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay_s)

    refresher = None
    if settings.worker_flows is None:  # the flows come from the server: wait for its list (or the stop)
        refresher = asyncio.create_task(refresh())
        waiters = [asyncio.ensure_future(fetched.wait()), asyncio.ensure_future(stop.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
    try:
        await _run(settings, executor, source, _installed(settings, node_types, remote_flows, store), store, stop,
                   where=f"server {settings.server_url}")
    finally:
        if refresher is not None:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher


async def _fetch_flows(settings: Settings) -> list[dict[str, Any]]:
    assert settings.server_url is not None
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session, \
            session.get(f"{settings.server_url}/vapi/flows") as response:
        response.raise_for_status()
        body = await response.json()
    flows = body.get("flows") if isinstance(body, dict) else None
    if not isinstance(flows, list):
        raise ValueError("GET /vapi/flows did not answer a list of flows")
    return [flow for flow in flows if isinstance(flow, dict) and isinstance(flow.get("name"), str)]


def _installed(settings: Settings, node_types: set[str], describe: Callable[[], list[dict[str, Any]]],
               store: ModelStore) -> Sequence[str] | Callable[[], list[str]]:
    """The configured flows, or a callable answering the flows this worker can run (logged when it changes)."""
    if settings.worker_flows is not None:
        return list(settings.worker_flows)
    last: list[str] | None = None
    folders = store.folders

    def current() -> list[str]:
        nonlocal last
        infos = describe()
        names = runnable_flows(infos, node_types, folders)
        if names != last:
            skipped = {info["name"]: why_not_runnable(info, node_types, folders)
                       for info in infos if info["name"] not in names}
            log.info("installed flows: %s%s", ", ".join(names) or "none",
                     "".join(f"; {name} lacks {', '.join(why)}" for name, why in skipped.items()))
        last = names
        return names

    return current


async def _run(settings: Settings, executor: Executor, source: TaskSource,
               installed: Sequence[str] | Callable[[], list[str]], store: ModelStore, stop: asyncio.Event, *,
               where: str) -> None:
    options = WorkerOptions(worker_id=settings.worker_id, installed_flows=installed, lease_s=settings.task_lease_s,
                            progress_interval_s=settings.progress_interval_s, claim_wait_s=settings.long_poll_s,
                            claim_ahead=settings.claim_ahead, models=WorkerModels(store.inventory, store.installer))
    worker = Worker(source, executor, options)
    print(f"Visionatrix worker {settings.worker_id} on {executor.device}, tasks from the {where}",
          file=sys.stderr, flush=True)
    try:
        await worker.run(stop)
    finally:
        await source.close()
        print("worker stopped", file=sys.stderr, flush=True)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
