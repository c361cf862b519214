"""Models: the catalog's models with their state in the server's models folder, installs with live progress
(``model_progress`` events), cancel and remove; and the admin's model commands to one worker (install, free).
Every change of the folder is published as a ``models_changed`` event."""

from __future__ import annotations

from aiohttp import web

from visionatrix.errors import Conflict, NotFound
from visionatrix.server import jsonio, request_models
from visionatrix.server.routes.worker_api import worker_id_of
from visionatrix.server.server_models import ServerModels
from visionatrix.server.services import SERVICES, Services


def _models(services: Services) -> ServerModels:
    if services.models is None:
        raise NotFound("models catalog", "none configured")
    return services.models


async def list_models(request: web.Request) -> web.Response:
    """Every catalog model (``?flow=NAME``: only those the flow needs), by name."""
    services = request.app[SERVICES]
    models = _models(services)
    flow_name = request.query.get("flow")
    infos = [flow.info() for flow in services.flows.flows()]
    needed_by = models.needed_by(infos)
    if flow_name is not None:
        names = [model.name for model in models.catalog.for_flow(services.flows.get(flow_name).info())]
    else:
        names = [model.name for model in models.catalog.models()]
    return web.json_response({"models": [models.view(name, needed_by) for name in names]}, dumps=jsonio.dumps)


async def install_models(request: web.Request) -> web.Response:
    """``{"names": [...]}`` or ``{"flow": NAME}`` → 202 ``{"started", "installed"}``; nothing starts when any name
    is unknown."""
    services = request.app[SERVICES]
    models = _models(services)
    names = models.resolve(await request_models.read(request, request_models.ModelInstallRequest), services.flows)
    started = models.installer.start(names)
    answer = request_models.ModelInstallStarted(started=started,
                                                installed=[name for name in names if name not in started])
    return web.json_response(answer.model_dump(), status=202, dumps=jsonio.dumps)


async def cancel_install(request: web.Request) -> web.Response:
    models = _models(request.app[SERVICES])
    name = request.match_info["name"]
    models.get(name)
    return web.json_response({"cancelled": models.installer.cancel(name)}, dumps=jsonio.dumps)


async def remove_model(request: web.Request) -> web.Response:
    """Delete the model's file (and its partial download) from the server's models folder; 409 while it
    downloads."""
    services = request.app[SERVICES]
    models = _models(services)
    name = request.match_info["name"]
    models.get(name)
    if models.installer.is_busy(name):
        raise Conflict(f"model {name!r} is downloading; cancel it first")
    models.inventory.remove(name)
    services.events.publish({"type": "models_changed", "change": "removed", "name": name})
    return web.Response(status=204)


async def install_on_worker(request: web.Request) -> web.Response:
    """Admin: ask one worker to download models into its own folder (``{"names"}`` or ``{"flow"}``) → 202
    ``{"queued": [...]}``; the worker takes the command with its next report and reports its progress."""
    services = request.app[SERVICES]
    worker_id = worker_id_of(request)
    body = await request_models.read(request, request_models.ModelInstallRequest)
    names = _models(services).resolve(body, services.flows)
    await services.queue.queue_command(worker_id, {"type": "install", "names": names})
    answer = request_models.WorkerCommandQueued(worker_id=worker_id, queued=names)
    return web.json_response(answer.model_dump(), status=202, dumps=jsonio.dumps)


async def free_worker(request: web.Request) -> web.Response:
    """Admin: ask one worker to unload every model it holds → 202."""
    services = request.app[SERVICES]
    worker_id = worker_id_of(request)
    await services.queue.queue_command(worker_id, {"type": "free"})
    answer = request_models.WorkerCommandQueued(worker_id=worker_id, queued="free")
    return web.json_response(answer.model_dump(), status=202, dumps=jsonio.dumps)
