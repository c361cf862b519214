"""The JSON request bodies of the ``/vapi`` REST routes as pydantic models: each field's type and limits are stated
once, and the same model validates the request (``parse``, ``check``) and generates its OpenAPI schema
(``openapi.document``).

A body that breaks them is one 400 ``invalid_request`` whose ``details`` map each wrong field to its problem, every
problem at once. The validators call the checks the API has always used (``parsing.int_value``,
``worker_request.Fields``, ``webhooks.targets.check_webhook``), so the problems read as they did. Rules between fields
(``names`` or ``flow``; a webhook's headers) are checked once each field is right.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, ClassVar, TypeVar

from aiohttp import web
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from visionatrix.server import parsing
from visionatrix.server.errors import BadRequest
from visionatrix.server.webhooks import targets
from visionatrix.server.worker_request import MAX_FLOWS, MAX_ID_CHARS, Fields

MAX_COUNT = 100
MIN_PRIORITY, MAX_PRIORITY = -100, 100
MAX_MODELS = 1000


def _problem(why: str) -> PydanticCustomError:
    return PydanticCustomError("problem", "{why}", {"why": why})


def _problems(problems: dict[str, str]) -> PydanticCustomError:
    """Problems of named fields found by a rule between fields (a model validator has no field of its own)."""
    summary = "; ".join(f"{name}: {why}" for name, why in problems.items())
    return PydanticCustomError("problems", "{summary}", {"summary": summary, "problems": problems})


def _by_fields(read: Callable[[Fields, str], Any]) -> BeforeValidator:
    """A field checked by ``worker_request.Fields`` (``read(fields, name)``), with its messages."""

    def check(value: Any, info: ValidationInfo) -> Any:
        name = info.field_name or "value"
        fields = Fields({name: value}, (name,))
        result = read(fields, name)
        if name in fields.problems:
            raise _problem(fields.problems[name])
        return result

    return BeforeValidator(check)


def _whole_number(low: int, high: int) -> BeforeValidator:
    """A whole number in ``low..high``: JSON numbers or decimal text (a form field), never true/false."""

    def check(value: Any) -> int:
        problems: dict[str, str] = {}
        number = parsing.int_value("value", value, low=low, high=high, problems=problems)
        if number is None:
            raise _problem(problems["value"])
        return number

    return BeforeValidator(check)


def _flow_name(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _problem("required: the name of the flow to run")
    return value.strip()


def _params(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _problem(f"expected an object of parameter name -> value, got {type(value).__name__}")
    return value


def _webhook_url(value: Any) -> Any:
    problems: dict[str, str] = {}
    targets.check_webhook(value, None, problems)
    if "webhook_url" in problems:
        raise _problem(problems["webhook_url"])
    return value


def _webhook_headers(value: Any) -> Any:
    if value is not None and not isinstance(value, dict):
        raise _problem(f"expected an object of header name -> value, got {type(value).__name__}")
    return value


def _model_names(fields: Fields, name: str) -> list[str] | None:
    names = fields.names(name, optional=True, what="model", most=MAX_MODELS)
    if names == []:
        fields.problems[name] = "names no model"
    return names


Name = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]
"""A flow's or catalog model's name (the width of the database columns)."""


class RequestBody(BaseModel):
    """A JSON object body: unknown fields are refused, types are not coerced (validators say what text may be)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    unknown_field: ClassVar[str] = "unknown field"
    required_field: ClassVar[dict[str, str]] = {}
    """The problem of a missing field, when it says more than ``required``."""


class TaskCreateRequest(RequestBody):
    """`POST /vapi/tasks`: `count` tasks of `flow` with `params`. A multipart form carries the same fields as text
    parts (`params` and `webhook_headers` as JSON text); its other parts are parameters and uploads."""

    unknown_field = "unknown field (flow parameters go into 'params')"
    required_field = {"flow": "required: the name of the flow to run"}

    flow: Annotated[str, Field(min_length=1), BeforeValidator(_flow_name), Field(description="The flow to run")]
    params: Annotated[dict[str, Any], BeforeValidator(_params)] = Field(
        default_factory=dict, description="Parameter name -> value")
    count: Annotated[int, Field(ge=1, le=MAX_COUNT), _whole_number(1, MAX_COUNT)] = Field(
        default=1, description="How many tasks to create (each a copy)")
    priority: Annotated[int, Field(ge=MIN_PRIORITY, le=MAX_PRIORITY), _whole_number(MIN_PRIORITY, MAX_PRIORITY)] = 0
    webhook_url: Annotated[
        Annotated[str, Field(max_length=targets.MAX_URL_CHARS, json_schema_extra={"format": "uri"})] | None,
        BeforeValidator(_webhook_url),
    ] = Field(default=None, description="http(s) URL POSTed a signed JSON body when the task finishes, fails or is "
                                        "cancelled (docs/security.md, Webhooks); private and loopback addresses are "
                                        "refused at delivery unless VIX_WEBHOOK_ALLOW_HOSTS names the host")
    webhook_headers: Annotated[
        Annotated[dict[str, Annotated[str, Field(max_length=targets.MAX_HEADER_VALUE_CHARS)]],
                  Field(max_length=targets.MAX_HEADERS)] | None,
        BeforeValidator(_webhook_headers),
    ] = Field(default=None, description="Extra headers sent with the webhook (never shown by the API); Host, "
                                        "Content-*, hop-by-hop and X-Visionatrix-* headers may not be given")

    _webhook: dict[str, Any] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check_webhook(self) -> TaskCreateRequest:
        problems: dict[str, str] = {}
        self._webhook = targets.check_webhook(self.webhook_url, self.webhook_headers, problems)
        if problems:
            raise _problems(problems)
        return self

    @property
    def webhook(self) -> dict[str, Any] | None:
        """``{"url", "headers"}`` for ``tasks.webhook``; None: no webhook."""
        return self._webhook


class ModelInstallRequest(RequestBody):
    """Either `names` (catalog model names) or `flow` (every catalog model the flow needs)."""

    names: Annotated[
        Annotated[list[Name], Field(min_length=1, max_length=MAX_MODELS)] | None,
        _by_fields(_model_names),
    ] = None
    flow: Annotated[
        Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)] | None,
        _by_fields(lambda fields, name: fields.text(name, max_chars=MAX_ID_CHARS, optional=True)),
    ] = None

    @model_validator(mode="after")
    def _one_of(self) -> ModelInstallRequest:
        if (self.names is None) == (self.flow is None):
            raise _problems({"names": "give either 'names' (a list of catalog model names) or 'flow' (a flow name)"})
        return self


class AllowedFlowsRequest(RequestBody):
    """`PUT /vapi/workers/{worker_id}/allowed_flows`: the flows an admin lets a worker take."""

    required_field = {"flows": "required: a list of flow names, or null for every flow the worker has"}

    flows: Annotated[
        Annotated[list[Name], Field(max_length=MAX_FLOWS)] | None,
        _by_fields(lambda fields, name: fields.names(name, optional=True)),
        Field(description="null lifts the restriction"),
    ]


# -- responses -----------------------------------------------------------------------------------------------------


def _described_by(component: str) -> WithJsonSchema:
    """An item whose schema is the document's hand-written ``component`` (views built as dicts); the document's
    generator (``openapi_parts.model_schemas``) turns the marker into a ``$ref``."""
    return WithJsonSchema({"x-component": component})


class TasksCreated(BaseModel):
    task_ids: list[int]


class TaskList(BaseModel):
    tasks: list[Annotated[dict[str, Any], _described_by("Task")]]
    limit: int
    offset: int


class FlowList(BaseModel):
    flows: list[Annotated[dict[str, Any], _described_by("Flow")]]


class ModelInstallStarted(BaseModel):
    started: list[str] = Field(description="downloads started (or already running)")
    installed: list[str] = Field(description="already installed: nothing to do")


class WorkerCommandQueued(BaseModel):
    worker_id: str
    queued: list[str] | str = Field(description='the model names to install, or "free"')


BODIES: tuple[type[RequestBody], ...] = (TaskCreateRequest, ModelInstallRequest, AllowedFlowsRequest)
"""The JSON request bodies of the REST routes (each route's ``requestBody`` refers to its schema)."""
RESPONSES: tuple[type[BaseModel], ...] = (TasksCreated, TaskList, FlowList, ModelInstallStarted, WorkerCommandQueued)

# -- reading -------------------------------------------------------------------------------------------------------

Body = TypeVar("Body", bound=RequestBody)


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def check(model: type[Body], data: dict[str, Any]) -> tuple[Body | None, dict[str, str]]:
    """``data`` as ``model``, or None and every problem as ``{field: problem}``."""
    try:
        return model.model_validate(data), {}
    except ValidationError as exc:
        return None, _details(model, exc)


def _details(model: type[RequestBody], exc: ValidationError) -> dict[str, str]:
    problems: dict[str, str] = {}
    for error in exc.errors(include_url=False):
        if error["type"] == "problems":
            problems.update(error.get("ctx", {})["problems"])
            continue
        field, *inner = [str(part) for part in error["loc"]] or ["body"]
        if error["type"] == "extra_forbidden":
            why = model.unknown_field
        elif error["type"] == "missing":
            why = model.required_field.get(field, "required")
        else:
            why = error["msg"]
        problems.setdefault(field, f"{'.'.join(inner)}: {why}" if inner else why)
    return problems


def invalid(problems: dict[str, str]) -> BadRequest:
    """The 400 ``invalid_request`` naming each field's problem."""
    lines = "; ".join(f"{name}: {why}" for name, why in problems.items())
    return BadRequest("invalid_request", f"the request is malformed: {lines}", problems)


def parse(model: type[Body], body: Any) -> Body:
    """A parsed JSON body as ``model``; a 400 ``invalid_request`` when it is not an object or breaks the model."""
    if not isinstance(body, dict):
        raise BadRequest("invalid_request", f"expected a JSON object, got {_kind(body)}")
    value, problems = check(model, body)
    if value is None:
        raise invalid(problems)
    return value


async def read(request: web.Request, model: type[Body]) -> Body:
    """The request's JSON body (``parsing.read_json``: the one safe reader) as ``model``."""
    return parse(model, await parsing.read_json(request))
