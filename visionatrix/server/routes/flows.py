"""Flows: list, show, upload (JSON body or a multipart ``file``) and delete uploaded ones."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from visionatrix.errors import InvalidFlow
from visionatrix.flows.importers.source import MAX_FLOW_BYTES
from visionatrix.server import jsonio, multipart, parsing, views
from visionatrix.server.errors import BadRequest, UnsupportedMediaType
from visionatrix.server.services import SERVICES


async def list_flows(request: web.Request) -> web.Response:
    catalog = request.app[SERVICES].flows
    return web.json_response({"flows": [views.flow_view(flow, catalog) for flow in catalog.flows()]},
                             dumps=jsonio.dumps)


async def get_flow(request: web.Request) -> web.Response:
    catalog = request.app[SERVICES].flows
    return web.json_response(views.flow_view(catalog.get(request.match_info["name"]), catalog), dumps=jsonio.dumps)


async def upload_flow(request: web.Request) -> web.Response:
    """The flow as the JSON body, or as the ``file`` part of a multipart form; ``?name=`` names an unnamed graph."""
    catalog = request.app[SERVICES].flows
    name = request.query.get("name") or None
    if request.content_type == "multipart/form-data":
        data, file_name = await _read_file_part(request)
        flow = catalog.add(data, name=name or (Path(file_name).stem if file_name else None))
    elif request.content_type in ("application/json", "application/octet-stream"):
        body = await parsing.read_json(request)
        if not isinstance(body, dict):
            raise InvalidFlow(f"not a flow: expected a JSON object, got {type(body).__name__}")
        flow = catalog.add(body, name=name)
    else:
        raise UnsupportedMediaType(request.content_type, ["application/json", "multipart/form-data"])
    return web.json_response(views.flow_view(flow, catalog), status=201, dumps=jsonio.dumps)


async def delete_flow(request: web.Request) -> web.Response:
    request.app[SERVICES].flows.delete(request.match_info["name"])
    return web.Response(status=204)


async def _read_file_part(request: web.Request) -> tuple[bytes, str | None]:
    reader = await multipart.open_reader(request)
    while (part := await multipart.next_part(reader)) is not None:
        if part.name == "file":
            return await multipart.read_bytes(part, "flow file", MAX_FLOW_BYTES), part.filename
    raise BadRequest("invalid_request", "the multipart form has no 'file' part with the flow", {"file": "required"})
