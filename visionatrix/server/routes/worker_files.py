"""The worker protocol's file transfers: download a task's input, upload one of its outputs or temporary outputs.

The lease token travels in the ``X-Vix-Lease`` header and is checked (and the lease extended) before anything is
read or sent. Both directions stream; no file is held whole in memory.
"""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from visionatrix.errors import NotFound, TooLarge
from visionatrix.server import jsonio, parsing, worker_request
from visionatrix.server.errors import BadRequest
from visionatrix.server.services import SERVICES
from visionatrix.storage.info import FileInfo
from visionatrix.storage.names import relative_parts

LEASE_HEADER = "X-Vix-Lease"
SHA256_HEADER = "X-Vix-SHA256"
CHUNK_BYTES = 256 * 1024
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def _lease_token(request: web.Request, problems: dict[str, str]) -> str:
    token = request.headers.get(LEASE_HEADER, "").strip()
    if not token:
        problems[LEASE_HEADER] = "required: the task's lease token"
    elif len(token) > worker_request.MAX_TOKEN_CHARS:
        problems[LEASE_HEADER] = f"longer than {worker_request.MAX_TOKEN_CHARS} characters"
    return token


def _refuse(problems: dict[str, str]) -> None:
    if problems:
        lines = "; ".join(f"{name}: {why}" for name, why in problems.items())
        raise BadRequest("invalid_request", f"the request is malformed: {lines}", problems)


async def download_input(request: web.Request) -> web.FileResponse:
    """The input file, streamed, with its SHA-256 (as recorded when the task was created) in ``X-Vix-SHA256``."""
    services = request.app[SERVICES]
    task_id = parsing.task_id(request)
    name = request.match_info["name"]
    problems: dict[str, str] = {}
    token = _lease_token(request, problems)
    _refuse(problems)
    await services.queue.extend_lease(task_id, token)
    files = (await services.queue.get(task_id)).files
    record = next((f for f in files if f.kind == "input" and f.name == name), None)
    if record is None:
        raise NotFound("input file", name)
    path = services.storage.resolve(task_id, "input", name)
    return web.FileResponse(path, headers={SHA256_HEADER: record.sha256})


async def upload_output(request: web.Request) -> web.Response:
    """The raw body becomes ``output/<id>/<name>``, replacing an earlier upload of that name in one rename.

    Checked before the body is read: the name, the headers, the lease and a declared ``Content-Length``. The body
    is then streamed to a hidden file beside the destination; past the upload limit (413), on a digest that differs
    from ``X-Vix-SHA256`` (400) or when the lease was lost meanwhile (409), nothing is kept.
    """
    return await _upload(request, "output")


async def upload_temp(request: web.Request) -> web.Response:
    """As :func:`upload_output`, into ``temp/<id>/<name>``: a temporary output (a preview image)."""
    return await _upload(request, "temp")


async def _upload(request: web.Request, kind: str) -> web.Response:
    services = request.app[SERVICES]
    storage = services.storage
    task_id = parsing.task_id(request)
    name = request.match_info["name"]
    problems: dict[str, str] = {}
    try:
        relative_parts(name)
    except ValueError as exc:
        problems["name"] = f"{name!r} is not an acceptable file name: {exc}"
    token = _lease_token(request, problems)
    expected = request.headers.get(SHA256_HEADER, "").strip().lower() or None
    if expected is not None and not _SHA256_RE.match(expected):
        problems[SHA256_HEADER] = "expected the SHA-256 of the body as 64 hex digits"
    _refuse(problems)
    await services.queue.extend_lease(task_id, token)
    if request.content_length is not None and request.content_length > storage.max_upload_bytes:
        raise TooLarge(name, storage.max_upload_bytes)
    dest = await asyncio.to_thread(storage.destination, task_id, kind, name)

    async def accept(info: FileInfo) -> None:
        if expected is not None and info.sha256 != expected:
            raise BadRequest("digest_mismatch", f"{name}: the body's SHA-256 is {info.sha256}, not the "
                             f"{SHA256_HEADER} {expected}; nothing was kept",
                             {"expected": expected, "actual": info.sha256})
        await services.queue.extend_lease(task_id, token)  # still this run's task: only then is a file replaced

    info = await storage.save_stream(dest, request.content.iter_chunked(CHUNK_BYTES), accept=accept)
    return web.json_response({"name": name, "size_bytes": info.size_bytes, "sha256": info.sha256}, status=201,
                             dumps=jsonio.dumps)


NODE_HEADER = "X-Vix-Node"
MAX_PREVIEW_BYTES = 4 * 1024 * 1024
IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")


async def preview(request: web.Request) -> web.Response:
    """A running node's preview image (JPEG or PNG, raw body): passed to whoever follows the task, never stored."""
    services = request.app[SERVICES]
    task_id = parsing.task_id(request)
    problems: dict[str, str] = {}
    token = _lease_token(request, problems)
    node_id = request.headers.get(NODE_HEADER, "").strip()
    if not node_id or len(node_id) > worker_request.MAX_ID_CHARS:
        problems[NODE_HEADER] = f"required: the node's id (at most {worker_request.MAX_ID_CHARS} characters)"
    _refuse(problems)
    if (request.content_length or 0) > MAX_PREVIEW_BYTES:
        raise TooLarge("the preview", MAX_PREVIEW_BYTES)
    image = await request.content.read(MAX_PREVIEW_BYTES + 1)
    if len(image) > MAX_PREVIEW_BYTES:
        raise TooLarge("the preview", MAX_PREVIEW_BYTES)
    if not image.startswith(IMAGE_MAGIC):
        raise BadRequest("invalid_request", "the preview must be a JPEG or PNG image")
    await services.queue.extend_lease(task_id, token)
    services.queue.publish_preview(task_id, (await services.queue.get(task_id)).flow, node_id, image)
    return web.Response(status=204)
