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
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from visionatrix import __version__
from visionatrix.auth.store import AuthStore
from visionatrix.cli import model_store
from visionatrix.cli.migrate_db import engine_label
from visionatrix.cli.nodes_list import load_registry
from visionatrix.config import PROJECT_ROOT, InvalidSetting, Settings
from visionatrix.db import migrate
from visionatrix.db.engine import create_engine
from visionatrix.executor.run import Executor, ExecutorSettings
from visionatrix.flows.catalog import FlowCatalog
from visionatrix.flows.installed import runnable_flows
from visionatrix.models.download import DownloadProgress
from visionatrix.models.folders import ModelFolders
from visionatrix.queue.events import TaskEvents
from visionatrix.queue.manager import TaskQueue
from visionatrix.queue.temp_files import delete_old_temps
from visionatrix.security_config import is_loopback_bind
from visionatrix.server import host_guard, slow_clients
from visionatrix.server.app import create_app
from visionatrix.server.server_models import ServerModels
from visionatrix.server.services import Services
from visionatrix.storage.files import TaskStorage
from visionatrix.worker.daemon import Worker, WorkerOptions
from visionatrix.worker.db_source import DatabaseSource
from visionatrix.worker.models import WorkerModels

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
        await check_sign_in(settings, AuthStore(engine))
        events = TaskEvents()
        queue = TaskQueue(engine, lease_s=settings.task_lease_s, max_attempts=settings.task_max_attempts,
                          vacuum_every=settings.queue_vacuum_every,
                          events=events)
        storage = TaskStorage(settings.tasks_files_dir, max_upload_bytes=settings.max_upload_bytes)
        registry = load_registry(settings)
        catalog = await model_store.read_catalog(settings)
        flows = FlowCatalog(list(settings.flows_dirs), settings.user_flows_dir, registry.object_info(),
                            models_catalog=catalog.raw)
        store = model_store.build_store(settings, catalog, on_progress=lambda p: _model_progressed(events, p))
        services = Services(queue=queue, storage=storage, flows=flows, registry=registry, events=events,
                            worker_auth=settings.worker_auth,
                            max_image_pixels=settings.max_image_pixels, version=__version__,
                            web_dir=PROJECT_ROOT / "web", models_dir=settings.models_dir,
                            user_dir=settings.user_dir, model_folders=store.folders,
                            models=ServerModels(store.catalog, store.inventory, store.installer),
                            security=settings.security, bind_host=settings.host)
        runner = web.AppRunner(create_app(services), access_log=None, **slow_clients.runner_options(settings.security))
        await runner.setup()
        try:
            await web.TCPSite(runner, settings.host, settings.port).start()
            print(f"Visionatrix {__version__} ({settings.mode}) on http://{settings.host}:{settings.port}/",
                  file=sys.stderr, flush=True)
            if not is_loopback_bind(settings.host):
                log.info("allowed hosts: %s", host_guard.AllowedHosts.build(
                    settings.security.allowed_hosts, settings.host).describe())
            if ready is not None:
                ready.set()
            await _run_background(settings, services, stop, store)
        finally:
            await store.installer.aclose()
            await runner.cleanup()
            await queue.aclose()
    finally:
        await engine.dispose()


async def check_sign_in(settings: Settings, store: AuthStore) -> None:
    """Refuse to serve with sign-in on and nobody who could sign in; warn when a non-loopback bind is left open."""
    security = settings.security
    if security.auth_required(settings.host):
        if await store.count_users() == 0:
            why = "VIX_AUTH=on" if security.auth == "on" else f"the server binds {settings.host}, not loopback"
            raise InvalidSetting(f"sign-in is required ({why}) but no user exists: create one with "
                                 "'python -m visionatrix users create NAME --admin', or set VIX_AUTH=off to serve "
                                 "without sign-in")
        log.info("sign-in is required (VIX_AUTH)")
    elif not is_loopback_bind(settings.host):
        log.warning("VIX_AUTH=off on %s: anyone who reaches this port can run, read and delete every task and "
                    "manage flows, models and workers", settings.host)


async def _run_background(settings: Settings, services: Services, stop: asyncio.Event,
                          store: model_store.ModelStore) -> None:
    """The lease reaper, the sweeper of old temporary outputs and, in DEFAULT mode, the in-process worker (sharing
    the server's models folder and downloads), until ``stop``."""
    jobs: list[asyncio.Task[Any]] = [
        asyncio.create_task(_reap_expired(services.queue, settings.task_lease_s / 2, stop)),
        asyncio.create_task(_sweep_temps(services, settings.temp_max_age_h * 3600, stop))]
    executor = None
    if settings.mode == "DEFAULT":
        executor = Executor(services.registry, ExecutorSettings(
            device=settings.device, temp_dir=settings.temp_dir, max_image_pixels=settings.max_image_pixels,
            cache_max_entries=settings.cache_max_entries, cache_max_bytes=settings.cache_max_bytes,
            model_folders=store.folders, ram_cache_bytes=settings.ram_cache_bytes,
            vram_reserve_bytes=settings.vram_reserve_bytes,
            remote_vae_decoders=settings.remote_vae_decoders))
        node_types = set(services.registry.object_info())
        options = WorkerOptions(worker_id=settings.worker_id,
                                installed_flows=lambda: _runnable(services.flows, node_types, store.folders),
                                lease_s=settings.task_lease_s, progress_interval_s=settings.progress_interval_s,
                                claim_ahead=settings.claim_ahead, models=WorkerModels(store.inventory, store.installer))
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


def _runnable(flows: FlowCatalog, node_types: set[str], folders: ModelFolders) -> list[str]:
    """Names of the flows whose node types and model files are all here."""
    return runnable_flows([flow.info() for flow in flows.flows()], node_types, folders)


def _model_progressed(events: TaskEvents, progress: DownloadProgress) -> None:
    """A download of the server's (and the in-process worker's) models folder moved on: a ``model_progress`` event,
    and ``models_changed`` once the model is installed."""
    events.publish(progress.event())
    if progress.state == "installed":
        events.publish({"type": "models_changed", "change": "installed", "name": progress.name})


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


TEMP_SWEEP_INTERVAL_S = 600.0


async def sweep_old_temps(queue: TaskQueue, storage: TaskStorage, max_age_s: float) -> int:
    """Remove the temporary outputs (rows, then files) of the tasks that ended more than ``max_age_s`` ago; returns
    how many tasks had some."""
    swept = 0
    while True:
        task_ids = await delete_old_temps(queue, finished_before=datetime.now(UTC) - timedelta(seconds=max_age_s))
        for task_id in task_ids:
            await asyncio.to_thread(storage.delete_temps, task_id)
        swept += len(task_ids)
        if not task_ids:
            return swept


async def _sweep_temps(services: Services, max_age_s: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            count = await sweep_old_temps(services.queue, services.storage, max_age_s)
            if count:
                log.info("removed the temporary outputs of %d task(s) older than %.0f h", count, max_age_s / 3600)
        except Exception:
            log.exception("removing old temporary outputs failed")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=TEMP_SWEEP_INTERVAL_S)


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
