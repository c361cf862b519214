"""Every route of the REST API under ``/vapi``; ``docs/api.md`` and ``visionatrix/server/openapi.py`` describe them."""

from __future__ import annotations

from aiohttp import web

from visionatrix.server.routes import (
    auth,
    events,
    files,
    flows,
    health,
    models,
    tasks,
    web_root,
    worker_api,
    worker_files,
    workers,
)
from visionatrix.server.services import SERVICES

PREFIX = "/vapi"


def setup_routes(app: web.Application) -> None:
    router = app.router
    router.add_get(f"{PREFIX}/health", health.get_health, name="health")
    router.add_get(f"{PREFIX}/openapi.json", health.get_openapi, name="openapi")
    router.add_get(f"{PREFIX}/flows", flows.list_flows, name="flows")
    router.add_post(f"{PREFIX}/flows", flows.upload_flow)
    router.add_get(f"{PREFIX}/flows/bundled", flows.list_bundled, name="flows_bundled")
    router.add_post(f"{PREFIX}/flows/bundled/{{name}}", flows.install_bundled, name="flow_install_bundled")
    router.add_get(f"{PREFIX}/flows/{{name}}", flows.get_flow, name="flow")
    router.add_get(f"{PREFIX}/flows/{{name}}/graph", flows.get_flow_graph, name="flow_graph")
    router.add_delete(f"{PREFIX}/flows/{{name}}", flows.delete_flow)
    router.add_get(f"{PREFIX}/tasks", tasks.list_tasks, name="tasks")
    router.add_post(f"{PREFIX}/tasks", tasks.create_tasks)
    router.add_get(f"{PREFIX}/tasks/{{task_id:\\d+}}", tasks.get_task, name="task")
    router.add_delete(f"{PREFIX}/tasks/{{task_id:\\d+}}", tasks.delete_task)
    router.add_post(f"{PREFIX}/tasks/{{task_id:\\d+}}/cancel", tasks.cancel_task, name="task_cancel")
    router.add_post(f"{PREFIX}/tasks/{{task_id:\\d+}}/restart", tasks.restart_task, name="task_restart")
    router.add_get(f"{PREFIX}/tasks/{{task_id:\\d+}}/files/{{kind}}/{{name:.+}}", files.download, name="task_file")
    router.add_get(f"{PREFIX}/workers", workers.list_workers, name="workers")
    router.add_put(f"{PREFIX}/workers/{{worker_id}}/allowed_flows", worker_api.set_allowed_flows,
                   name="worker_allowed_flows")
    router.add_post(f"{PREFIX}/workers/{{worker_id}}/install", models.install_on_worker, name="worker_install")
    router.add_post(f"{PREFIX}/workers/{{worker_id}}/free", models.free_worker, name="worker_free")
    router.add_get(f"{PREFIX}/models", models.list_models, name="models")
    router.add_post(f"{PREFIX}/models/install", models.install_models, name="models_install")
    router.add_post(f"{PREFIX}/models/{{name}}/cancel", models.cancel_install, name="model_cancel")
    router.add_delete(f"{PREFIX}/models/{{name}}", models.remove_model, name="model")
    auth.add_routes(router, PREFIX)
    _setup_worker_routes(router)
    router.add_get(f"{PREFIX}/events", events.websocket, name="events")
    router.add_get(f"{PREFIX}/events/stream", events.server_sent_events, name="events_stream")
    if app[SERVICES].web_dir is not None:
        router.add_get("/", web_root.index, name="index")
        router.add_get(f"{web_root.ASSETS}/{{path:.+}}", web_root.asset, name="web_asset")


def _setup_worker_routes(router: web.UrlDispatcher) -> None:
    """The worker protocol (``docs/design/worker-protocol.md``); ``WORKER_AUTH`` guards every one of them."""
    worker = f"{PREFIX}/worker"
    task = f"{worker}/tasks/{{task_id:\\d+}}"
    router.add_post(f"{worker}/claim", worker_api.claim, name="worker_claim")
    router.add_post(f"{worker}/claim/withdraw", worker_api.withdraw_claim, name="worker_claim_withdraw")
    router.add_get(f"{task}/inputs/{{name:.+}}", worker_files.download_input, name="worker_input")
    router.add_post(f"{task}/start", worker_api.start, name="worker_start")
    router.add_post(f"{task}/heartbeat", worker_api.heartbeat, name="worker_heartbeat")
    router.add_post(f"{task}/preview", worker_files.preview, name="worker_preview")
    router.add_put(f"{task}/outputs/{{name:.*}}", worker_files.upload_output, name="worker_output")
    router.add_put(f"{task}/temps/{{name:.*}}", worker_files.upload_temp, name="worker_temp")
    router.add_post(f"{task}/finish", worker_api.finish, name="worker_finish")
    router.add_post(f"{task}/fail", worker_api.fail, name="worker_fail")
    router.add_post(f"{task}/cancelled", worker_api.cancelled, name="worker_cancelled")
    router.add_post(f"{task}/release", worker_api.release, name="worker_release")
    router.add_put(f"{worker}/workers/{{worker_id}}", worker_api.report_worker, name="worker_report")
