"""Reading the bodies of the worker protocol (``/vapi/worker/...``).

Each body is a JSON object; unknown fields, missing fields and values of the wrong type or out of range are all
reported at once in one 400 ``invalid_request`` whose ``details`` map each field to its problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from visionatrix.server import parsing
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


@dataclass
class ClaimRequest:
    worker_id: str
    installed_flows: list[str]
    last_flow: str | None
    wait_s: float
    ahead: bool = False
    """A claim made while the worker's executor is busy: it yields new tasks to idle workers."""
    claim_id: str | None = None
    """The worker's id of this claim, the same on every retry (``claim_ledger``)."""


@dataclass
class WithdrawRequest:
    worker_id: str
    claim_id: str


@dataclass
class HeartbeatRequest:
    lease_token: str
    progress: float | None
    current_node: str | None


@dataclass
class OutputRef:
    """A file the worker put in the task's output folder, and the node that wrote it."""

    name: str
    node_id: str | None


@dataclass
class FinishRequest:
    lease_token: str
    timings: dict[str, float]
    outputs: list[OutputRef] = field(default_factory=list)
    peak_vram_bytes: int | None = None
    """The most GPU memory torch held during the run (None: a CPU worker, or not measured)."""


@dataclass
class FailRequest:
    lease_token: str
    node_id: str | None
    class_type: str | None
    message: str
    traceback: str | None
    peak_vram_bytes: int | None = None


@dataclass
class WorkerReportRequest:
    mode: str
    device: str
    installed_flows: list[str]
    current_task_id: int | None
    node_types: list[str] | None = None
    resources: dict[str, Any] | None = None
    stopping: bool = False
    models: dict[str, Any] | None = None


RESOURCE_BYTES = ("device_memory_total", "device_memory_free", "ram_total", "ram_free")
MAX_BYTES = 1 << 62
"""The largest byte count a worker may report (a memory size; fits the database's signed 64-bit integers)."""


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


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

    def text(self, name: str, *, max_chars: int, optional: bool = False, empty_ok: bool = False) -> str | None:
        """A string of at most ``max_chars``; None when ``optional`` and absent or null."""
        if not self._present(name, optional):
            return None
        value = self.body[name]
        if not isinstance(value, str) or not (value or empty_ok):
            self.problems[name] = f"expected a {'' if empty_ok else 'non-empty '}string, got {_kind(value)}"
            return None
        if len(value) > max_chars:
            self.problems[name] = f"longer than {max_chars} characters"
            return None
        return value

    def number(self, name: str, *, low: float, high: float, optional: bool = False) -> float | None:
        """A number in ``low..high``; None when ``optional`` and absent or null."""
        if not self._present(name, optional):
            return None
        value = self.body[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            self.problems[name] = f"expected a number from {low:g} to {high:g}, got {_kind(value)}"
            return None
        if not low <= value <= high:
            self.problems[name] = f"{value} is out of range: expected {low:g} to {high:g}"
            return None
        return float(value)

    def integer(self, name: str, *, low: int, high: int, optional: bool = False) -> int | None:
        """A whole number in ``low..high``; None when ``optional`` and absent or null."""
        if not self._present(name, optional):
            return None
        value = self.body[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problems[name] = f"expected a whole number from {low} to {high}, got {value!r}"
            return None
        return value

    def names(self, name: str, *, optional: bool = False, what: str = "flow", most: int = MAX_FLOWS
              ) -> list[str] | None:
        """A list of at most ``most`` non-empty strings (flow names, or ``what``); None when ``optional`` and absent
        or null."""
        if not self._present(name, optional):
            return None
        value = self.body[name]
        if not isinstance(value, list):
            self.problems[name] = f"expected a list of {what} names, got {_kind(value)}"
            return None
        if len(value) > most:
            self.problems[name] = f"more than {most} {what}s"
            return None
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item or len(item) > MAX_ID_CHARS:
                self.problems[name] = (f"item {index}: expected a {what} name (a non-empty string of at most "
                                       f"{MAX_ID_CHARS} characters), got {item!r}")
                return None
        return list(value)

    def flag(self, name: str) -> bool:
        """A boolean; False when absent or null."""
        if not self._present(name, True):
            return False
        value = self.body[name]
        if not isinstance(value, bool):
            self.problems[name] = f"expected true or false, got {_kind(value)}"
            return False
        return value

    def done(self) -> None:
        """Raise every recorded problem as one 400 ``invalid_request``."""
        if self.problems:
            lines = "; ".join(f"{name}: {why}" for name, why in self.problems.items())
            raise BadRequest("invalid_request", f"the request is malformed: {lines}", self.problems)


def read_claim(body: Any) -> ClaimRequest:
    fields = Fields(body, ("worker_id", "installed_flows", "last_flow", "wait_s", "ahead", "claim_id"))
    worker_id = fields.text("worker_id", max_chars=MAX_ID_CHARS)
    installed = fields.names("installed_flows")
    last_flow = fields.text("last_flow", max_chars=MAX_ID_CHARS, optional=True)
    wait_s = fields.number("wait_s", low=0, high=MAX_WAIT_S, optional=True)
    ahead = fields.flag("ahead")
    claim_id = fields.text("claim_id", max_chars=MAX_TOKEN_CHARS, optional=True)
    fields.done()
    assert worker_id is not None and installed is not None
    return ClaimRequest(worker_id, installed, last_flow, DEFAULT_WAIT_S if wait_s is None else wait_s, ahead,
                        claim_id)


def read_withdraw(body: Any) -> WithdrawRequest:
    fields = Fields(body, ("worker_id", "claim_id"))
    worker_id = fields.text("worker_id", max_chars=MAX_ID_CHARS)
    claim_id = fields.text("claim_id", max_chars=MAX_TOKEN_CHARS)
    fields.done()
    assert worker_id is not None and claim_id is not None
    return WithdrawRequest(worker_id, claim_id)


def read_lease_token(body: Any) -> str:
    """The body of ``cancelled`` and ``release``: ``{"lease_token"}``."""
    fields = Fields(body, ("lease_token",))
    token = fields.text("lease_token", max_chars=MAX_TOKEN_CHARS)
    fields.done()
    assert token is not None
    return token


def read_heartbeat(body: Any) -> HeartbeatRequest:
    fields = Fields(body, ("lease_token", "progress", "current_node"))
    token = fields.text("lease_token", max_chars=MAX_TOKEN_CHARS)
    progress = fields.number("progress", low=0, high=100, optional=True)
    current_node = fields.text("current_node", max_chars=MAX_ID_CHARS, optional=True)
    fields.done()
    assert token is not None
    return HeartbeatRequest(token, progress, current_node)


def read_finish(body: Any) -> FinishRequest:
    fields = Fields(body, ("lease_token", "timings", "outputs", "peak_vram_bytes"))
    token = fields.text("lease_token", max_chars=MAX_TOKEN_CHARS)
    timings = _timings(fields.body.get("timings"), fields.problems)
    outputs = _outputs(fields.body.get("outputs"), fields.problems)
    peak = fields.integer("peak_vram_bytes", low=0, high=MAX_BYTES, optional=True)
    fields.done()
    assert token is not None
    return FinishRequest(token, timings, outputs, peak)


def _timings(raw: Any, problems: dict[str, str]) -> dict[str, float]:
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


def _outputs(raw: Any, problems: dict[str, str]) -> list[OutputRef]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems["outputs"] = f"expected a list of {{name, node_id}} objects, got {_kind(raw)}"
        return []
    if len(raw) > MAX_OUTPUTS:
        problems["outputs"] = f"more than {MAX_OUTPUTS} outputs"
        return []
    outputs: list[OutputRef] = []
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
            assert name is not None
            outputs.append(OutputRef(name, node_id))
    return outputs


def read_fail(body: Any) -> FailRequest:
    fields = Fields(body, ("lease_token", "node_id", "class_type", "message", "traceback", "peak_vram_bytes"))
    token = fields.text("lease_token", max_chars=MAX_TOKEN_CHARS)
    node_id = fields.text("node_id", max_chars=MAX_ID_CHARS, optional=True)
    class_type = fields.text("class_type", max_chars=MAX_ID_CHARS, optional=True)
    message = fields.text("message", max_chars=1_000_000, empty_ok=True)
    traceback = fields.text("traceback", max_chars=10_000_000, optional=True, empty_ok=True)
    peak = fields.integer("peak_vram_bytes", low=0, high=MAX_BYTES, optional=True)
    fields.done()
    assert token is not None and message is not None
    return FailRequest(token, node_id, class_type, message, traceback, peak)


def read_worker_report(body: Any) -> WorkerReportRequest:
    from visionatrix.server.model_request import read_worker_models

    fields = Fields(body, ("mode", "device", "installed_flows", "current_task_id", "node_types", "resources",
                           "stopping", "models"))
    mode = fields.text("mode", max_chars=MAX_MODE_CHARS)
    device = fields.text("device", max_chars=MAX_DEVICE_CHARS)
    installed = fields.names("installed_flows")
    current = fields.integer("current_task_id", low=1, high=parsing.MAX_ROW_ID, optional=True)
    node_types = fields.names("node_types", optional=True, what="node type", most=MAX_NODE_TYPES)
    resources = _read_resources(fields)
    stopping = fields.flag("stopping")
    models = read_worker_models(fields)
    fields.done()
    assert mode is not None and device is not None and installed is not None
    return WorkerReportRequest(mode, device, installed, current, node_types, resources, stopping, models)


def _read_resources(fields: Fields) -> dict[str, Any] | None:
    """``resources``: ``device_name`` (text) and the byte counts of ``RESOURCE_BYTES`` (each optional, null
    allowed); problems are recorded as ``resources.<field>``."""
    value = fields.body.get("resources")
    if value is None:
        return None
    if not isinstance(value, dict):
        fields.problems["resources"] = f"expected an object, got {_kind(value)}"
        return None
    inner = Fields(value, ("device_name", *RESOURCE_BYTES))
    resources: dict[str, Any] = {"device_name": inner.text("device_name", max_chars=MAX_DEVICE_CHARS * 2,
                                                           optional=True)}
    for name in RESOURCE_BYTES:
        resources[name] = inner.integer(name, low=0, high=MAX_BYTES, optional=True)
    fields.problems.update({f"resources.{name}": why for name, why in inner.problems.items()})
    return resources

