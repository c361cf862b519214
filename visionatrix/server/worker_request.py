"""The checks of the worker protocol's bodies (``/vapi/worker/...``) and their limits: the messages a wrong value
gets. The bodies themselves are the pydantic models of ``worker_models``, whose validators call these checks; other
bodies read with ``Fields`` (``model_request``) report their problems in the same words.

Unknown fields, missing fields and values of the wrong type or out of range are all reported at once in one 400
``invalid_request`` whose ``details`` map each field to its problem.
"""

from __future__ import annotations

import math
from typing import Any

from visionatrix.server.errors import BadRequest
from visionatrix.storage.names import relative_parts

MAX_WAIT_S = 30.0
DEFAULT_WAIT_S = 20.0
MAX_ID_CHARS = 255
"""Worker ids, flow names, node ids: the width of their database columns."""
MAX_TOKEN_CHARS = 64
MAX_MODE_CHARS = 16
MAX_DEVICE_CHARS = 64
MAX_FLOWS = 1000
MAX_NODE_TYPES = 20_000
MAX_OUTPUTS = 10_000
MAX_NAME_CHARS = 511
"""A task file's relative name (``task_files.name`` holds 512)."""


RESOURCE_BYTES = ("device_memory_total", "device_memory_free", "ram_total", "ram_free")
MAX_BYTES = 1 << 62
"""The largest byte count a worker may report (a memory size; fits the database's signed 64-bit integers)."""


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def text_problem(value: Any, *, max_chars: int, empty_ok: bool = False) -> str | None:
    """What is wrong with ``value`` as a string of at most ``max_chars`` (None: nothing)."""
    if not isinstance(value, str) or not (value or empty_ok):
        return f"expected a {'' if empty_ok else 'non-empty '}string, got {_kind(value)}"
    if len(value) > max_chars:
        return f"longer than {max_chars} characters"
    return None


def number_problem(value: Any, *, low: float, high: float) -> str | None:
    """What is wrong with ``value`` as a finite number in ``low..high`` (None: nothing)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return f"expected a number from {low:g} to {high:g}, got {_kind(value)}"
    if not low <= value <= high:
        return f"{value} is out of range: expected {low:g} to {high:g}"
    return None


def integer_problem(value: Any, *, low: int, high: int) -> str | None:
    """What is wrong with ``value`` as a whole number in ``low..high`` (None: nothing)."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return f"expected a whole number from {low} to {high}, got {value!r}"
    return None


def names_problem(value: Any, *, what: str = "flow", most: int = MAX_FLOWS) -> str | None:
    """What is wrong with ``value`` as a list of at most ``most`` non-empty names (None: nothing)."""
    if not isinstance(value, list):
        return f"expected a list of {what} names, got {_kind(value)}"
    if len(value) > most:
        return f"more than {most} {what}s"
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item or len(item) > MAX_ID_CHARS:
            return (f"item {index}: expected a {what} name (a non-empty string of at most {MAX_ID_CHARS} "
                    f"characters), got {item!r}")
    return None


def flag_problem(value: Any) -> str | None:
    """What is wrong with ``value`` as true or false (None: nothing)."""
    return None if isinstance(value, bool) else f"expected true or false, got {_kind(value)}"


class Fields:
    """The fields of one JSON object body; each reader records what is wrong, ``done()`` raises it all at once."""

    def __init__(self, body: Any, known: tuple[str, ...]) -> None:
        if not isinstance(body, dict):
            raise BadRequest("invalid_request", f"expected a JSON object, got {_kind(body)}")
        self.body = body
        self.problems: dict[str, str] = {name: "unknown field" for name in body if name not in known}

    def _present(self, name: str, optional: bool) -> bool:
        """Whether ``name`` holds a value to check; a missing required field is recorded."""
        if self.body.get(name) is not None:
            return True
        if not optional:
            self.problems[name] = "required" if name not in self.body else "must not be null"
        return False

    def _checked(self, name: str, problem: str | None) -> bool:
        if problem is not None:
            self.problems[name] = problem
        return problem is None

    def text(self, name: str, *, max_chars: int, optional: bool = False, empty_ok: bool = False) -> str | None:
        """A string of at most ``max_chars``; None when ``optional`` and absent or null."""
        if not self._present(name, optional):
            return None
        value = self.body[name]
        return value if self._checked(name, text_problem(value, max_chars=max_chars, empty_ok=empty_ok)) else None

    def number(self, name: str, *, low: float, high: float, optional: bool = False) -> float | None:
        """A number in ``low..high``; None when ``optional`` and absent or null."""
        if not self._present(name, optional):
            return None
        value = self.body[name]
        return float(value) if self._checked(name, number_problem(value, low=low, high=high)) else None

    def integer(self, name: str, *, low: int, high: int, optional: bool = False) -> int | None:
        """A whole number in ``low..high``; None when ``optional`` and absent or null."""
        if not self._present(name, optional):
            return None
        value = self.body[name]
        return value if self._checked(name, integer_problem(value, low=low, high=high)) else None

    def names(self, name: str, *, optional: bool = False, what: str = "flow", most: int = MAX_FLOWS
              ) -> list[str] | None:
        """A list of at most ``most`` non-empty strings (flow names, or ``what``); None when ``optional`` and absent
        or null."""
        if not self._present(name, optional):
            return None
        value = self.body[name]
        return list(value) if self._checked(name, names_problem(value, what=what, most=most)) else None

    def flag(self, name: str) -> bool:
        """A boolean; False when absent or null."""
        if not self._present(name, True):
            return False
        value = self.body[name]
        return bool(value) if self._checked(name, flag_problem(value)) else False

    def done(self) -> None:
        """Raise every recorded problem as one 400 ``invalid_request``."""
        if self.problems:
            lines = "; ".join(f"{name}: {why}" for name, why in self.problems.items())
            raise BadRequest("invalid_request", f"the request is malformed: {lines}", self.problems)


def read_timings(raw: Any, problems: dict[str, str]) -> dict[str, float]:
    """A finish's ``timings`` (node id -> seconds, absent or null: none); a problem is recorded as ``timings``."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems["timings"] = f"expected an object of node id -> seconds, got {_kind(raw)}"
        return {}
    for node_id, seconds in raw.items():
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds) \
                or seconds < 0:
            problems["timings"] = f"node {node_id!r}: expected a number of seconds (0 or more), got {seconds!r}"
            return {}
    return {str(node_id): float(seconds) for node_id, seconds in raw.items()}


def read_outputs(raw: Any, problems: dict[str, str]) -> list[dict[str, Any]]:
    """A finish's ``outputs`` as ``{"name", "node_id"}`` (absent or null: none); problems are recorded as
    ``outputs`` or ``outputs[<index>].<field>``."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems["outputs"] = f"expected a list of {{name, node_id}} objects, got {_kind(raw)}"
        return []
    if len(raw) > MAX_OUTPUTS:
        problems["outputs"] = f"more than {MAX_OUTPUTS} outputs"
        return []
    outputs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"outputs[{index}]"
        entry = Fields(item, ("name", "node_id")) if isinstance(item, dict) else None
        if entry is None:
            problems[where] = f"expected a {{name, node_id}} object, got {_kind(item)}"
            continue
        name = entry.text("name", max_chars=MAX_NAME_CHARS)
        node_id = entry.text("node_id", max_chars=MAX_ID_CHARS, optional=True)
        if name is not None:
            try:
                relative_parts(name)
            except ValueError as exc:
                entry.problems["name"] = f"{name!r} is not an acceptable file name: {exc}"
            else:
                if name in seen:
                    entry.problems["name"] = f"{name!r} is listed more than once"
                seen.add(name)
        problems.update({f"{where}.{key}": why for key, why in entry.problems.items()})
        if not entry.problems:
            outputs.append({"name": name, "node_id": node_id})
    return outputs


def read_resources(value: Any, problems: dict[str, str]) -> dict[str, Any] | None:
    """A report's ``resources``: ``device_name`` (text) and the byte counts of ``RESOURCE_BYTES`` (each optional,
    null allowed); problems are recorded as ``resources`` or ``resources.<field>``."""
    if value is None:
        return None
    if not isinstance(value, dict):
        problems["resources"] = f"expected an object, got {_kind(value)}"
        return None
    inner = Fields(value, ("device_name", *RESOURCE_BYTES))
    resources: dict[str, Any] = {"device_name": inner.text("device_name", max_chars=MAX_DEVICE_CHARS * 2,
                                                           optional=True)}
    for name in RESOURCE_BYTES:
        resources[name] = inner.integer(name, low=0, high=MAX_BYTES, optional=True)
    problems.update({f"resources.{name}": why for name, why in inner.problems.items()})
    return resources
