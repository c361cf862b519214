"""Who may call each route, stated once: the role every route (method and template) requires when sign-in is on.

Roles: ``public`` (anyone: the sign-in page and what it loads), ``user`` (any signed-in user; the handler then shows
only the caller's own tasks), ``admin`` (flows, models, workers, server logs and settings), ``worker`` (the worker
protocol: ``WORKER_AUTH`` or a worker token, never a user's credentials). A route missing from the table requires
``admin``; a test checks every registered route is listed. ComfyUI's routes are listed once, without the
``/api``, ``/comfy`` and ``/comfy/api`` prefixes they are also served under.
"""

from __future__ import annotations

from aiohttp import web

from visionatrix.server.comfy import PREFIXES

ROLES = ("public", "user", "admin", "worker")
READ = ("GET", "HEAD")
ANY = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")

POLICY: dict[str, dict[tuple[str, ...], str]] = {
    # -- the sign-in page, its assets and the ComfyUI editor's static files
    "/": {READ: "public"},
    "/ui/{path}": {READ: "public"},
    "/comfy": {READ: "public"},
    "/{path}": {READ: "public"},
    "/assets/images/favicon_progress_16x16/{name}": {READ: "public"},
    "/extensions": {READ: "public"},
    "/extensions/visionatrix/{name}": {READ: "public"},
    "/features": {READ: "public"},
    "/i18n": {READ: "public"},
    "/vapi/health": {READ: "public"},
    "/vapi/openapi.json": {READ: "public"},
    "/vapi/auth/login": {("POST",): "public"},
    "/vapi/auth/logout": {("POST",): "public"},
    "/vapi/auth/me": {READ: "public"},
    # -- a user's own things
    "/vapi/auth/tokens": {READ: "user", ("POST",): "user"},
    "/vapi/auth/tokens/{token_id}": {("DELETE",): "user"},
    "/vapi/auth/password": {("POST",): "user"},
    "/vapi/flows": {READ: "user", ("POST",): "admin"},
    "/vapi/flows/bundled": {READ: "user"},
    "/vapi/flows/bundled/{name}": {("POST",): "admin"},
    "/vapi/flows/{name}": {READ: "user", ("DELETE",): "admin"},
    "/vapi/flows/{name}/graph": {READ: "user"},
    "/vapi/tasks": {READ: "user", ("POST",): "user"},
    "/vapi/tasks/{task_id}": {READ: "user", ("DELETE",): "user"},
    "/vapi/tasks/{task_id}/cancel": {("POST",): "user"},
    "/vapi/tasks/{task_id}/restart": {("POST",): "user"},
    "/vapi/tasks/{task_id}/files/{kind}/{name}": {READ: "user"},
    "/vapi/models": {READ: "user"},
    "/vapi/events": {READ: "user"},
    "/vapi/events/stream": {READ: "user"},
    "/embeddings": {READ: "user"},
    "/workflow_templates": {READ: "user"},
    "/workflow_templates/visionatrix/{file}": {READ: "user"},
    "/templates/{file}": {READ: "user"},
    "/global_subgraphs": {READ: "user"},
    "/global_subgraphs/{id}": {READ: "user"},
    "/node_replacements": {READ: "user"},
    "/models": {READ: "user"},
    "/models/{folder}": {READ: "user"},
    "/experiment/models": {READ: "user"},
    "/experiment/models/{folder}": {READ: "user"},
    "/view_metadata/{folder}": {READ: "user"},
    "/system_stats": {READ: "user"},
    "/users": {READ: "user"},
    "/settings": {READ: "user", ("POST",): "user"},
    "/settings/{id}": {READ: "user", ("POST",): "user"},
    "/userdata": {READ: "user"},
    "/v2/userdata": {READ: "user"},
    "/userdata/{file}": {READ: "user", ("POST",): "user", ("DELETE",): "user"},
    "/userdata/{file}/move/{dest}": {("POST",): "user"},
    "/view": {READ: "user"},
    "/upload/image": {("POST",): "user"},
    "/upload/mask": {("POST",): "user"},
    "/object_info": {READ: "user"},
    "/object_info/{node_class}": {READ: "user"},
    "/prompt": {READ: "user", ("POST",): "user"},
    "/queue": {READ: "user", ("POST",): "user"},
    "/interrupt": {("POST",): "user"},
    "/history": {READ: "user", ("POST",): "user"},
    "/history/{prompt_id}": {READ: "user"},
    "/jobs": {READ: "user"},
    "/jobs/cancel": {("POST",): "user"},
    "/jobs/{job_id}": {READ: "user"},
    "/jobs/{job_id}/cancel": {("POST",): "user"},
    "/ws": {READ: "user"},
    # -- the server's administration
    "/vapi/users": {READ: "admin"},
    "/vapi/worker_tokens": {READ: "admin", ("POST",): "admin"},
    "/vapi/worker_tokens/{token_id}": {("DELETE",): "admin"},
    "/vapi/workers": {READ: "admin"},
    "/vapi/workers/{worker_id}/allowed_flows": {("PUT",): "admin"},
    "/vapi/workers/{worker_id}/install": {("POST",): "admin"},
    "/vapi/workers/{worker_id}/free": {("POST",): "admin"},
    "/vapi/models/install": {("POST",): "admin"},
    "/vapi/models/{name}/cancel": {("POST",): "admin"},
    "/vapi/models/{name}": {("DELETE",): "admin"},
    "/free": {("POST",): "admin"},
    "/internal/logs": {READ: "admin"},
    "/internal/logs/raw": {READ: "admin"},
    "/internal/logs/subscribe": {("PATCH",): "admin"},
    "/internal/folder_paths": {READ: "admin"},
    "/internal/files/{kind}": {READ: "admin"},
    # -- the worker protocol
    "/vapi/worker/claim": {("POST",): "worker"},
    "/vapi/worker/claim/withdraw": {("POST",): "worker"},
    "/vapi/worker/tasks/{task_id}/inputs/{name}": {READ: "worker"},
    "/vapi/worker/tasks/{task_id}/start": {("POST",): "worker"},
    "/vapi/worker/tasks/{task_id}/heartbeat": {("POST",): "worker"},
    "/vapi/worker/tasks/{task_id}/preview": {("POST",): "worker"},
    "/vapi/worker/tasks/{task_id}/outputs/{name}": {("PUT",): "worker"},
    "/vapi/worker/tasks/{task_id}/temps/{name}": {("PUT",): "worker"},
    "/vapi/worker/tasks/{task_id}/finish": {("POST",): "worker"},
    "/vapi/worker/tasks/{task_id}/fail": {("POST",): "worker"},
    "/vapi/worker/tasks/{task_id}/cancelled": {("POST",): "worker"},
    "/vapi/worker/tasks/{task_id}/release": {("POST",): "worker"},
    "/vapi/worker/workers/{worker_id}": {("PUT",): "worker"},
}
_COMFY_PREFIXES = sorted((p for p in PREFIXES if p), key=len, reverse=True)


def template(request: web.Request) -> str | None:
    """The matched route's template without a ComfyUI prefix; None when no route matched."""
    resource = request.match_info.route.resource
    if resource is None:
        return None
    canonical = resource.canonical
    for prefix in _COMFY_PREFIXES:
        if canonical.startswith(prefix + "/") and canonical[len(prefix):] in POLICY:
            return canonical[len(prefix):]
    return canonical


def role_for(method: str, route_template: str | None) -> str:
    """The role ``method`` on ``route_template`` requires (``admin`` for anything unlisted)."""
    if route_template is None:
        return "public"  # no route: the answer is a 404 (or 405) that shows nothing
    for methods, role in POLICY.get(route_template, {}).items():
        if method in methods:
            return role
    if route_template.startswith("/vapi/worker/"):
        return "worker"
    return "admin"


def required_role(request: web.Request) -> str:
    if request.path.startswith("/vapi/worker/"):
        return "worker"  # by the decoded path too: an encoded slash cannot route around the check
    return role_for(request.method, template(request))


def allows(identity_role: str, required: str) -> bool:
    """Whether a caller of ``identity_role`` may call a route that requires ``required``."""
    if required == "public":
        return True
    if required == "worker":
        return identity_role == "worker"
    if required == "user":
        return identity_role in ("user", "admin")
    return identity_role == "admin"
