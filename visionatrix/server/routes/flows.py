"""Flows: list, show, upload (JSON body or a multipart ``file``), delete (an uploaded flow) or uninstall (a bundled
one), and the bundled flows with install. Each change is published as a ``flows_changed`` event."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from visionatrix.errors import InvalidFlow
from visionatrix.flows.importers.source import MAX_FLOW_BYTES
from visionatrix.server import jsonio, multipart, parsing, views
from visionatrix.server.errors import BadRequest
from visionatrix.server.services import SERVICES, Services


async def list_flows(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    return web.json_response({"flows": [views.flow_view(flow, services) for flow in services.flows.flows()]},
                             dumps=jsonio.dumps)


async def get_flow(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    return web.json_response(views.flow_view(services.flows.get(request.match_info["name"]), services),
                             dumps=jsonio.dumps)


async def get_flow_graph(request: web.Request) -> web.Response:
    """The flow's API-format graph with its default values (what the graph editor opens)."""
    flow = request.app[SERVICES].flows.get(request.match_info["name"])
    return web.json_response(flow.graph, dumps=jsonio.dumps)


async def list_bundled(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    flows = [{**views.flow_view(flow, services), "installed": installed}
             for flow, installed in services.flows.bundled_flows()]
    return web.json_response({"flows": flows}, dumps=jsonio.dumps)


async def install_bundled(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    flow = services.flows.install_bundled(request.match_info["name"])
    _changed(services, "installed", flow.name)
    return web.json_response(views.flow_view(flow, services), status=201, dumps=jsonio.dumps)


def _changed(services: Services, change: str, name: str) -> None:
    services.events.publish({"type": "flows_changed", "change": change, "flow": name})


async def upload_flow(request: web.Request) -> web.Response:
    """The flow as the JSON body, or as the ``file`` part of a multipart form; ``?name=`` names an unnamed graph."""
    services = request.app[SERVICES]
    catalog = services.flows
    name = request.query.get("name") or None
    if request.content_type == "multipart/form-data":
        raw, file_name = await _read_file_part(request)
        try:
            body = await jsonio.loads_async(raw)
        except jsonio.JsonRefused as exc:
            raise BadRequest("invalid_json", f"the flow file {exc}") from None
        name = name or (Path(file_name).stem if file_name else None)
    else:
        body = await parsing.read_json(request)
    if not isinstance(body, dict):
        raise InvalidFlow(f"not a flow: expected a JSON object, got {type(body).__name__}")
    parsing.check_graph_size(body, services.security.max_graph_nodes, "the flow")
    flow = catalog.add(body, name=name)
    _changed(services, "uploaded", flow.name)
    return web.json_response(views.flow_view(flow, services), status=201, dumps=jsonio.dumps)


async def delete_flow(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    name = request.match_info["name"]
    bundled = services.flows.is_bundled(name)
    services.flows.delete(name)
    _changed(services, "uninstalled" if bundled else "deleted", name)
    return web.Response(status=204)


async def _read_file_part(request: web.Request) -> tuple[bytes, str | None]:
    reader = await multipart.open_reader(request)
    while (part := await multipart.next_part(reader)) is not None:
        if part.name == "file":
            return await multipart.read_bytes(part, "flow file", MAX_FLOW_BYTES), part.filename
    raise BadRequest("invalid_request", "the multipart form has no 'file' part with the flow", {"file": "required"})
