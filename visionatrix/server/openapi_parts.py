"""Building blocks of the OpenAPI document (``openapi``, ``openapi_worker``): references, JSON bodies, the shared
error responses, the components generated from pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

ERROR_RESPONSES = {
    400: ("BadRequest", "The request is malformed or invalid (see `error` and `details`)"),
    401: ("Unauthorized", "Sign-in is required (or, on the worker routes, `WORKER_AUTH` or a worker token) and the "
                          "credentials are missing, wrong, expired or revoked"),
    403: ("Forbidden", "The caller is signed in but the route requires the admin role"),
    404: ("NotFound", "No such object"),
    409: ("Conflict", "Not allowed in the object's current state (`conflict`), or the lease token does not own "
                      "the running task (`lease_lost`)"),
    408: ("BodyTimeout", "The request body stalled for `VIX_BODY_TIMEOUT_S`"),
    413: ("TooLarge", "An upload or body is over its size limit"),
    415: ("UnsupportedMediaType", "The body's content type is not accepted"),
    429: ("TooManyRequests", "Too many failed sign-ins from this address or for this user; see `Retry-After`"),
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"$ref": f"#/components/responses/{ERROR_RESPONSES[code][0]}"} for code in codes}


def model_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """The components of pydantic ``models`` (and the models they use), by class name; an ``{"x-component": NAME}``
    marker (a view the document describes by hand) becomes a reference to that component."""
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return _resolve_markers(schemas)


def _resolve_markers(node: Any) -> Any:
    if isinstance(node, dict):
        if set(node) == {"x-component"}:
            return ref(node["x-component"])
        return {key: _resolve_markers(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve_markers(value) for value in node]
    return node
