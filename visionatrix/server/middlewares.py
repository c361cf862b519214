"""The one error middleware: every failure becomes ``{"error": code, "message": ..., "details": ...}``.

Only this module knows how the project's errors map to HTTP status codes. An unexpected exception is logged with
its traceback and answered with a generic 500; the client never sees the traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from visionatrix import errors
from visionatrix.server import jsonio
from visionatrix.server.errors import BadRequest, TooManyRequests, UnsupportedMediaType

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(status: int, code: str, message: str, details: Any = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": code, "message": message, "details": details}
    return web.json_response(body, status=status, headers=headers, dumps=jsonio.dumps)


def describe(exc: errors.VisionatrixError) -> tuple[int, str, Any]:
    """``(status, code, details)`` for one of the project's errors."""
    if isinstance(exc, UnsupportedMediaType):
        return 415, exc.code, exc.details
    if isinstance(exc, TooManyRequests):
        return 429, exc.code, exc.details
    if isinstance(exc, BadRequest):
        return 400, exc.code, exc.details
    if isinstance(exc, errors.NotFound):
        return 404, "not_found", {"kind": exc.kind, "id": exc.ident}
    if isinstance(exc, errors.Conflict):
        return 409, "conflict", None
    if isinstance(exc, errors.LeaseLost):
        return 409, "lease_lost", {"task_id": exc.task_id}
    if isinstance(exc, errors.TooLarge):
        return 413, "too_large", {"what": exc.what, "limit_bytes": exc.limit_bytes}
    if isinstance(exc, errors.InvalidParams):
        return 400, "invalid_params", exc.problems
    if isinstance(exc, errors.InvalidGraph):
        return 400, "invalid_graph", {"error": exc.error, "node_errors": exc.node_errors}
    if isinstance(exc, errors.InvalidFlow):
        return 400, "invalid_flow", None
    if isinstance(exc, errors.ModelFileError):
        return 400, "invalid_model", {"path": exc.path, "reason": exc.reason}
    if isinstance(exc, errors.DownloadRefused):
        return 400, "download_refused", {"model": exc.name, "reason": exc.reason}
    if isinstance(exc, errors.DownloadAuthRequired):
        return 502, "download_unauthorized", {"model": exc.name, "token": exc.token_env, "status": exc.status}
    if isinstance(exc, errors.DownloadError):
        return 502, "download_failed", {"model": exc.name, "reason": exc.reason}
    if isinstance(exc, errors.ModelError):
        return 400, "model_error", None
    if isinstance(exc, errors.InvalidInput):
        return 400, "invalid_input", {"input_name": exc.input_name}
    return 500, "internal_error", None


def _http_error(request: web.Request, exc: web.HTTPException) -> web.Response:
    headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
    if exc.status == 404:
        return error_response(404, "not_found", f"no route for {request.method} {request.path}", None)
    if isinstance(exc, web.HTTPMethodNotAllowed):
        allowed = sorted(exc.allowed_methods)
        return error_response(405, "method_not_allowed", f"{request.method} is not allowed on {request.path}; "
                              f"allowed: {', '.join(allowed)}", {"allowed": allowed}, headers)
    if exc.status == 413:
        return error_response(413, "too_large", exc.text or exc.reason, None)
    code = exc.reason.lower().replace(" ", "_").replace("-", "_") if exc.reason else f"http_{exc.status}"
    return error_response(exc.status, code, exc.text or exc.reason, None, headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _http_error(request, exc)
    except errors.VisionatrixError as exc:
        status, code, details = describe(exc)
        if status == 500:
            log.error("unmapped error on %s %s", request.method, request.path, exc_info=exc)
            return error_response(500, "internal_error", "internal server error")
        return error_response(status, code, exc.message, details)
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal server error")
