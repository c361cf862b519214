"""Reading request bodies, query strings and path parts, with a 400 that names the problem."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from visionatrix.errors import NotFound
from visionatrix.server.errors import BadRequest, UnsupportedMediaType

MAX_ROW_ID = 2**63 - 1


async def read_json(request: web.Request) -> Any:
    """The body parsed as JSON; malformed JSON is a 400 that says where it broke."""
    if request.content_type not in ("application/json", "application/octet-stream") and request.body_exists:
        raise UnsupportedMediaType(request.content_type, ["application/json"])
    text = await request.text()
    if not text.strip():
        raise BadRequest("invalid_json", "the request body is empty; expected a JSON document")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest("invalid_json", f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} "
                         f"column {exc.colno}", {"line": exc.lineno, "column": exc.colno}) from None
    except RecursionError:
        raise BadRequest("invalid_json", "the request body is JSON nested too deeply") from None


def int_value(name: str, raw: Any, *, low: int, high: int, problems: dict[str, str]) -> int | None:
    """``raw`` as an integer in ``low..high`` (numbers or decimal text); the reason goes into ``problems``."""
    value: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, float) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str) and raw.strip().lstrip("+-").isdigit():
        value = int(raw.strip())
    if value is None:
        problems[name] = f"expected a whole number from {low} to {high}, got {raw!r}"
        return None
    if not low <= value <= high:
        problems[name] = f"{value} is out of range: expected {low} to {high}"
        return None
    return value


def task_id(request: web.Request) -> int:
    """The ``{task_id}`` of the path (the route only matches digits); too large an id cannot exist."""
    raw = request.match_info["task_id"]
    value = int(raw)
    if value > MAX_ROW_ID:
        raise NotFound("task", raw)
    return value
