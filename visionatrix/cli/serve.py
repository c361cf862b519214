"""``run``: the composition root of the service — database, queue, storage, flows, server and, in the DEFAULT mode,
one in-process worker. Ctrl-C or SIGTERM shuts down gracefully: the running task is interrupted and goes back to
``pending``; it is never left ``running``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from visionatrix import __version__
from visionatrix.cli.migrate_db import engine_label
from visionatrix.cli.nodes_list import load_registry
from visionatrix.config import PROJECT_ROOT, InvalidSetting, Settings
from visionatrix.db import migrate
from visionatrix.db.engine import create_engine
from visionatrix.executor.run import Executor, ExecutorSettings
from visionatrix.flows.catalog import FlowCatalog
from visionatrix.models import extra_paths
from visionatrix.queue.events import TaskEvents
from visionatrix.queue.manager import TaskQueue
from visionatrix.server.app import create_app
from visionatrix.server.services import Services
from visionatrix.storage.files import TaskStorage
from visionatrix.worker.daemon import Worker, WorkerOptions
from visionatrix.worker.db_source import DatabaseSource

log = logging.getLogger(__name__)


def command(args: argparse.Namespace, settings: Settings) -> int:
    if settings.mode == "WORKER":
        from visionatrix.cli import worker_mode

        return worker_mode.command(settings)
    try:
        asyncio.run(serve(settings))
    except OSError as exc:
        print(f"error: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def serve(settings: Settings, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set or SIGINT/SIGTERM arrives; ``ready`` is set once the port is listening."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    engine = create_engine(settings.database_uri)
    try:
        try:
            await migrate.upgrade(engine)
        except (SQLAlchemyError, OSError) as exc:
            raise InvalidSetting(f"DATABASE_URI {engine_label(settings.database_uri)}: {_first_line(exc)}") from None
        events = TaskEvents()
        queue = TaskQueue(engine, lease_s=settings.task_lease_s, max_attempts=settings.task_max_attempts,
                          events=events)
        storage = TaskStorage(settings.tasks_files_dir, max_upload_bytes=settings.max_upload_bytes)
        registry = load_registry(settings)
        flows = FlowCatalog(list(settings.flows_dirs), settings.user_flows_dir, registry.object_info())
        services = Services(queue=queue, storage=storage, flows=flows, registry=registry, events=events,
                            worker_auth=settings.worker_auth,
                            max_image_pixels=settings.max_image_pixels, version=__version__,
                            web_dir=PROJECT_ROOT / "web", models_dir=settings.models_dir,
                            user_dir=settings.user_dir,
                            model_folders=extra_paths.model_folders(settings.models_dir, settings.extra_model_paths))
        runner = web.AppRunner(create_app(services), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.host, settings.port).start()
            print(f"Visionatrix {__version__} ({settings.mode}) on http://{settings.host}:{settings.port}/",
                  file=sys.stderr, flush=True)
            if ready is not None:
                ready.set()
            await _run_background(settings, services, stop)
        finally:
            await runner.cleanup()
            await queue.aclose()
    finally:
        await engine.dispose()


async def _run_background(settings: Settings, services: Services, stop: asyncio.Event) -> None:
    """The lease reaper and, in DEFAULT mode, the in-process worker, until ``stop``."""
    jobs: list[asyncio.Task[Any]] = [
        asyncio.create_task(_reap_expired(services.queue, settings.task_lease_s / 2, stop))]
    executor = None
    if settings.mode == "DEFAULT":
        executor = Executor(services.registry, ExecutorSettings(
            device=settings.device, temp_dir=settings.temp_dir, max_image_pixels=settings.max_image_pixels,
            cache_max_entries=settings.cache_max_entries))
        options = WorkerOptions(worker_id=settings.worker_id, installed_flows=lambda: _runnable(services.flows),
                                lease_s=settings.task_lease_s, progress_interval_s=settings.progress_interval_s,
                                claim_ahead=settings.claim_ahead)
        wakeup = asyncio.Event()
        source = DatabaseSource(services.queue, services.storage, mode="DEFAULT", wakeup=wakeup,
                                poll_min_s=settings.poll_min_s, poll_max_s=settings.poll_max_s,
                                node_types=services.registry.object_info())
        worker = Worker(source, executor, options)
        jobs.append(asyncio.create_task(_wake_on_new_tasks(services.events, wakeup, stop)))
        jobs.append(asyncio.create_task(worker.run(stop)))
        log.info("in-process worker %s on %s", settings.worker_id, executor.device)
    try:
        await stop.wait()
    finally:
        print("shutting down", file=sys.stderr, flush=True)
        await asyncio.gather(*jobs, return_exceptions=True)
        if executor is not None:
            executor.close()


def _runnable(flows: FlowCatalog) -> list[str]:
    """Names of the flows whose node types are all installed here."""
    return [flow.name for flow in flows.flows() if not flow.missing_node_types]


async def _reap_expired(queue: TaskQueue, interval_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            count = await queue.requeue_expired()
            if count:
                log.warning("requeued %d task(s) whose worker lost its lease", count)
        except Exception:
            log.exception("requeue of expired leases failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=interval_s)


async def _wake_on_new_tasks(events: TaskEvents, wakeup: asyncio.Event, stop: asyncio.Event) -> None:
    async def listen() -> None:
        async for event in events.subscribe():
            if event.get("type") in ("task_queued", "task_restarted"):
                wakeup.set()

    listener = asyncio.create_task(listen())
    await stop.wait()
    listener.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listener
