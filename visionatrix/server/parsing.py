"""Reading request bodies, query strings and path parts, with a 400 that names the problem."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import hdrs, web

from visionatrix.errors import NotFound
from visionatrix.server import jsonio
from visionatrix.server.errors import BadRequest, UnsupportedMediaType

MAX_ROW_ID = 2**63 - 1
_INT_TEXT = re.compile(rf"[+-]?[0-9]{{1,{jsonio.MAX_INT_DIGITS}}}")


SCRIPT_TYPES = ("application/octet-stream", "text/plain", "application/x-www-form-urlencoded")
"""Content types ComfyUI's API scripts send with their JSON (``requests``: none, which reads as octet-stream;
``urllib``: form-urlencoded): taken by ComfyUI's routes from a request with no ``Origin`` (not a web page)."""


def is_json_type(content_type: str) -> bool:
    return content_type == "application/json" or (content_type.startswith("application/")
                                                  and content_type.endswith("+json"))


def _check_type(request: web.Request, *, scripts_ok: bool, plain_ok: bool) -> None:
    """Refuse (415) a body whose content type is not JSON: a web page of another site may send ``text/plain``,
    form-urlencoded or untyped bodies without asking first (no CORS preflight), never ``application/json``."""
    content_type = request.content_type
    if is_json_type(content_type):
        return
    if plain_ok and content_type == "text/plain":
        return
    if scripts_ok and content_type in SCRIPT_TYPES and hdrs.ORIGIN not in request.headers:
        return
    given = content_type if hdrs.CONTENT_TYPE in request.headers else "none"
    raise UnsupportedMediaType(given, ["application/json"])


async def read_json(request: web.Request, *, optional: bool = False, scripts_ok: bool = False,
                    plain_ok: bool = False) -> Any:
    """The body parsed as JSON under :mod:`jsonio`'s rules; a body that breaks them is a 400 ``invalid_json`` naming
    the problem, one that is not typed JSON a 415. ``optional``: an empty body is None (any content type)."""
    if request.body_exists and (request.content_length or 0) > 0:
        _check_type(request, scripts_ok=scripts_ok, plain_ok=plain_ok)  # refused before a byte is read
    raw = await request.read()
    if not raw.strip():
        if optional:
            return None
        raise BadRequest("invalid_json", "the request body is empty; expected a JSON document")
    _check_type(request, scripts_ok=scripts_ok, plain_ok=plain_ok)
    try:
        return await jsonio.loads_async(raw)
    except jsonio.JsonRefused as exc:
        raise BadRequest("invalid_json", f"the request body {exc}") from None


def json_value(name: str, raw: str, problems: dict[str, str]) -> Any:
    """A form field or query value holding JSON; None with the reason in ``problems`` when it breaks the rules."""
    try:
        return jsonio.loads(raw)
    except jsonio.JsonRefused as exc:
        problems[name] = f"the value {exc}"
        return None


def int_value(name: str, raw: Any, *, low: int, high: int, problems: dict[str, str]) -> int | None:
    """``raw`` as an integer in ``low..high`` (numbers or decimal text); the reason goes into ``problems``."""
    value: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str) and _INT_TEXT.fullmatch(raw.strip()):
        value = int(raw.strip())
    if value is None:
        shown = repr(raw) if len(repr(raw)) <= 80 else f"{repr(raw)[:60]}... ({len(repr(raw))} characters)"
        problems[name] = f"expected a whole number from {low} to {high}, got {shown}"
        return None
    if not low <= value <= high:
        shown = str(value) if len(str(value)) <= 40 else f"a number of {len(str(value))} digits"
        problems[name] = f"{shown} is out of range: expected {low} to {high}"
        return None
    return value


def task_id(request: web.Request) -> int:
    """The ``{task_id}`` of the path (the route only matches digits); too large an id cannot exist."""
    raw = request.match_info["task_id"]
    value = row_id(raw)
    if value is None:
        raise NotFound("task", raw[:40])
    return value


def row_id(raw: str) -> int | None:
    """``raw`` as a database row id (ASCII digits, 1 to ``MAX_ROW_ID``); None when it cannot be one."""
    if not raw.isascii() or not raw.isdigit() or len(raw.lstrip("0")) > len(str(MAX_ROW_ID)):
        return None
    value = int(raw)
    return value if 0 < value <= MAX_ROW_ID else None


def graph_nodes(data: Any) -> int:
    """The nodes of a flow or prompt, counted before any other work: an API graph's entries, ``graph`` of a
    ``{"manifest", "graph"}`` flow, or a UI workflow's ``nodes`` and those of its subgraphs."""
    if not isinstance(data, dict):
        return 0
    if "manifest" in data and isinstance(data.get("graph"), dict):
        return len(data["graph"])
    if not isinstance(data.get("nodes"), list):
        return len(data)
    count = len(data["nodes"])
    definitions = data.get("definitions")
    subgraphs = definitions.get("subgraphs") if isinstance(definitions, dict) else None
    for subgraph in subgraphs if isinstance(subgraphs, list) else []:
        if isinstance(subgraph, dict) and isinstance(subgraph.get("nodes"), list):
            count += len(subgraph["nodes"])
    return count


def check_graph_size(data: Any, max_nodes: int, what: str) -> None:
    """Refuse (400 ``too_many_nodes``) a graph of more than ``max_nodes`` nodes (``VIX_MAX_GRAPH_NODES``)."""
    count = graph_nodes(data)
    if count > max_nodes:
        raise BadRequest("too_many_nodes", f"{what} has {count} nodes; at most {max_nodes} are taken "
                         "(VIX_MAX_GRAPH_NODES)", {"nodes": count, "limit": max_nodes})
