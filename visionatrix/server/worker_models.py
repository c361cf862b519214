"""The JSON bodies of the worker protocol (``/vapi/worker/...``) as pydantic models: each field's type and limits
are stated once, and the same model validates the request (``request_models.read``) and generates its OpenAPI
schema (``openapi.document``; the component names are the class names).

A body that breaks them is one 400 ``invalid_request`` whose ``details`` map each wrong field to its problem, every
problem at once (a nested one as ``outputs[0].name``, ``resources.ram_free``, ``models.loaded.0.bytes``). The
validators call the checks of ``worker_request`` (and ``model_request`` for a report's ``models``), so the problems
read as they always did. They are plain functions run once per field: these are the hot paths of every worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from visionatrix.server import model_request, parsing
from visionatrix.server import worker_request as checks
from visionatrix.server.request_models import RequestBody, _problem, _problems
from visionatrix.server.worker_request import (
    DEFAULT_WAIT_S,
    MAX_BYTES,
    MAX_DEVICE_CHARS,
    MAX_FLOWS,
    MAX_ID_CHARS,
    MAX_MODE_CHARS,
    MAX_NAME_CHARS,
    MAX_NODE_TYPES,
    MAX_OUTPUTS,
    MAX_TOKEN_CHARS,
    MAX_WAIT_S,
)

MAX_MESSAGE_CHARS = 1_000_000
MAX_TRACEBACK_CHARS = 10_000_000


def _checked(problem_of: Callable[[Any], str | None], *, null: Any = ..., convert: Callable[[Any], Any] | None = None,
             ) -> BeforeValidator:
    """A field checked by ``problem_of`` (a ``worker_request`` check); null becomes ``null`` where one is given,
    else it is refused (a missing field is pydantic's ``required``)."""

    def check(value: Any) -> Any:
        if value is None:
            if null is ...:
                raise _problem("must not be null")
            return null
        why = problem_of(value)
        if why is not None:
            raise _problem(why)
        return value if convert is None else convert(value)

    return BeforeValidator(check)


def _text(max_chars: int, *, empty_ok: bool = False, null: Any = ...) -> BeforeValidator:
    return _checked(lambda value: checks.text_problem(value, max_chars=max_chars, empty_ok=empty_ok), null=null)


def _names(*, what: str = "flow", most: int = MAX_FLOWS, null: Any = ...) -> BeforeValidator:
    return _checked(lambda value: checks.names_problem(value, what=what, most=most), null=null)


def _number(low: float, high: float, *, null: Any) -> BeforeValidator:
    return _checked(lambda value: checks.number_problem(value, low=low, high=high), null=null, convert=float)


def _bytes(*, null: Any = None) -> BeforeValidator:
    return _checked(lambda value: checks.integer_problem(value, low=0, high=MAX_BYTES), null=null)


def _flag() -> BeforeValidator:
    return _checked(checks.flag_problem, null=False)


def _nested(read: Callable[[Any, dict[str, str]], Any]) -> BeforeValidator:
    """A field read by ``read(value, problems)``, which records problems under their own (nested) names."""

    def check(value: Any) -> Any:
        problems: dict[str, str] = {}
        result = read(value, problems)
        if problems:
            raise _problems(problems)
        return result

    return BeforeValidator(check)


def _report_models(value: Any, problems: dict[str, str]) -> dict[str, Any] | None:
    fields = checks.Fields({"models": value}, ("models",))
    models = model_request.read_worker_models(fields)
    problems.update(fields.problems)
    return models


WorkerId = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS), _text(MAX_ID_CHARS)]
LeaseToken = Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_CHARS, description="The lease token of the "
                                                                                         "claim"),
                       _text(MAX_TOKEN_CHARS)]
FlowNames = Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]],
                      Field(max_length=MAX_FLOWS), _names()]
NodeId = Annotated[Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)] | None, _text(MAX_ID_CHARS, null=None)]
PeakVram = Annotated[
    Annotated[int, Field(ge=0, le=MAX_BYTES)] | None, _bytes(),
    Field(description="The most bytes torch held allocated on the GPU during the run (null: a CPU worker, or not "
                      "measured); shown as the task's peak_vram_bytes")]
ByteCount = Annotated[Annotated[int, Field(ge=0, le=MAX_BYTES)] | None, _bytes()]


class ClaimRequest(RequestBody):
    """`POST /vapi/worker/claim`: the next task of the worker's flows, waited for up to `wait_s`."""

    worker_id: WorkerId
    installed_flows: FlowNames
    last_flow: NodeId = Field(default=None, description="Preferred when it has a task (its models are loaded)")
    wait_s: Annotated[float, Field(ge=0, le=MAX_WAIT_S), _number(0, MAX_WAIT_S, null=DEFAULT_WAIT_S)] = Field(
        default=DEFAULT_WAIT_S, description="How long to wait for a task")
    ahead: Annotated[bool, _flag()] = Field(
        default=False, description="Claimed while the worker is busy: after a wake-up it waits a moment so that idle "
                                   "workers take the new task first")
    claim_id: Annotated[Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_CHARS)] | None,
                        _text(MAX_TOKEN_CHARS, null=None)] = Field(
        default=None, description="The worker's id of this claim, the same on every retry: a retry answers the task a "
                                  "lost reply carried; a withdrawn claim answers null")


class WithdrawRequest(RequestBody):
    """`POST /vapi/worker/claim/withdraw`: the worker gave up on the claim `claim_id`."""

    worker_id: WorkerId
    claim_id: Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_CHARS), _text(MAX_TOKEN_CHARS)]


class Heartbeat(RequestBody):
    """`POST /vapi/worker/tasks/{task_id}/heartbeat`: extend the lease, and report progress."""

    lease_token: LeaseToken
    progress: Annotated[
        Annotated[float, Field(ge=0, le=100)] | None,
        _number(0, 100, null=None),
    ] = Field(default=None, description="When given, stored with current_node (else only the lease is extended)")
    current_node: NodeId = None


class LeaseRequest(RequestBody):
    """`cancelled` and `release`: only the lease token."""

    lease_token: LeaseToken


class OutputRef(RequestBody):
    """A file the worker put in the task's output folder, and the node that wrote it."""

    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS,
                               description="Its name in the task's output folder (may contain one subfolder)")]
    node_id: Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)] | None = None


class FinishRequest(RequestBody):
    """`POST /vapi/worker/tasks/{task_id}/finish`: the run succeeded."""

    lease_token: LeaseToken
    timings: Annotated[dict[str, Annotated[float, Field(ge=0)]], _nested(checks.read_timings)] = Field(
        default_factory=dict, description="node id -> seconds")
    outputs: Annotated[list[OutputRef], Field(max_length=MAX_OUTPUTS), _nested(checks.read_outputs)] = Field(
        default_factory=list, description="Files already uploaded to the task's output folder")
    temps: Annotated[list[OutputRef], Field(max_length=MAX_OUTPUTS), _nested(checks.read_outputs)] = Field(
        default_factory=list, description="Temporary outputs (previews) already uploaded with `PUT .../temps/{name}`")
    peak_vram_bytes: PeakVram = None


class FailRequest(RequestBody):
    """`POST /vapi/worker/tasks/{task_id}/fail`: the run failed (at a node, when `node_id` is given)."""

    lease_token: LeaseToken
    node_id: NodeId = None
    class_type: NodeId = None
    message: Annotated[str, Field(max_length=MAX_MESSAGE_CHARS), _text(MAX_MESSAGE_CHARS, empty_ok=True)]
    traceback: Annotated[Annotated[str, Field(max_length=MAX_TRACEBACK_CHARS)] | None,
                         _text(MAX_TRACEBACK_CHARS, empty_ok=True, null=None)] = None
    peak_vram_bytes: PeakVram = None


class WorkerResources(BaseModel):
    """Memory as the worker last measured it, in bytes (null: unknown); a CPU device's memory is the host's RAM."""

    model_config = ConfigDict(extra="forbid", strict=True)

    device_name: Annotated[str | None, Field(max_length=MAX_DEVICE_CHARS * 2)] = None
    device_memory_total: ByteCount = None
    device_memory_free: ByteCount = None
    ram_total: ByteCount = None
    ram_free: ByteCount = None


class WorkerReport(RequestBody):
    """`PUT /vapi/worker/workers/{worker_id}`: the worker's liveness report."""

    mode: Annotated[str, Field(min_length=1, max_length=MAX_MODE_CHARS), _text(MAX_MODE_CHARS)]
    device: Annotated[str, Field(min_length=1, max_length=MAX_DEVICE_CHARS), _text(MAX_DEVICE_CHARS)]
    installed_flows: FlowNames
    current_task_id: Annotated[
        Annotated[int, Field(ge=1, le=parsing.MAX_ROW_ID)] | None,
        _checked(lambda value: checks.integer_problem(value, low=1, high=parsing.MAX_ROW_ID), null=None),
    ] = None
    node_types: Annotated[
        Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]],
                  Field(max_length=MAX_NODE_TYPES)] | None,
        _names(what="node type", most=MAX_NODE_TYPES, null=None),
    ] = Field(default=None, description="The node types registered on the worker: it may take ComfyUI prompts made "
                                        "of them")
    resources: Annotated[WorkerResources | None, _nested(checks.read_resources)] = None
    stopping: Annotated[bool, _flag()] = Field(
        default=False, description="The last report of a worker that is shutting down")
    models: Annotated[dict[str, Any] | None, _nested(_report_models),
                      WithJsonSchema({"anyOf": [{"x-component": "WorkerModels"}, {"type": "null"}]})] = Field(
        default=None, description="The catalog models it has, holds in memory and is downloading")

    def resources_dict(self) -> dict[str, Any] | None:
        """``resources`` as stored in ``workers.resources``."""
        return None if self.resources is None else self.resources.model_dump()


BODIES: tuple[type[RequestBody], ...] = (ClaimRequest, WithdrawRequest, Heartbeat, LeaseRequest, FinishRequest,
                                         FailRequest, WorkerReport)
"""The JSON request bodies of the worker protocol (each route's ``requestBody`` refers to its schema)."""
