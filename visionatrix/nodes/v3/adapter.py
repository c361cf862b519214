"""V3 node classes in the V1 shape our registry, validation and executor use. Imports no torch.

:func:`to_v1` subclasses a V3 node with ``INPUT_TYPES`` (read from ``define_schema()`` on every call, so lists
such as model files stay current), ``RETURN_TYPES``/``RETURN_NAMES``/``OUTPUT_IS_LIST``, the flags, and a
``FUNCTION`` that calls the classmethod ``execute`` with ``cls.hidden`` filled in and turns its
:class:`~visionatrix.nodes.v3.io.NodeOutput` into the V1 ``{"result", "ui", "expand"}`` dict.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any

from visionatrix.nodes.v3 import dynamic, io, ui

FUNCTION = "_vix_execute"


def is_v3(node_class: object) -> bool:
    return isinstance(node_class, type) and issubclass(node_class, io.ComfyNode) and not getattr(
        node_class, "_vix_v1", False)


def run_sync(value: Any) -> Any:
    """The result of ``value``, awaiting it first when it is awaitable (in a fresh loop, on another thread when
    this one already runs a loop)."""
    if not inspect.isawaitable(value):
        return value

    async def wait() -> Any:
        return await value

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(wait())
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="vix-v3-await")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def input_types(schema: io.Schema) -> dict[str, dict[str, Any]]:
    """``INPUT_TYPES()`` of a V3 schema."""
    spec: dict[str, dict[str, Any]] = {"required": {}, "optional": {}}
    for item in schema.inputs:
        spec["optional" if item.optional else "required"][item.id] = item.as_v1()
    if schema.hidden:
        spec["hidden"] = {io.Hidden(h).name: io.Hidden(h).value for h in schema.hidden}
    return spec


def to_v1(node_class: type[io.ComfyNode]) -> type:
    """A V1-shaped subclass of the V3 ``node_class``."""
    schema = node_class.define_schema()
    hidden_names = {io.Hidden(h).name for h in schema.hidden}

    def _clone(cls: type, kwargs: dict[str, Any]) -> type:
        values = {name: kwargs.pop(name) for name in list(kwargs) if name in hidden_names}
        return type(cls.__name__, (cls,), {"hidden": io.HiddenHolder(values)})

    live = dynamic.is_dynamic(schema.inputs)

    def _nested(kwargs: dict[str, Any]) -> dict[str, Any]:
        """Dynamic inputs' flat values (``images.image0``...) as the dicts ``execute`` takes."""
        if not live:
            return kwargs
        return dynamic.nest(kwargs, dynamic.expand(node_class.define_schema().inputs, kwargs))

    def _vix_execute(self: Any, **kwargs: Any) -> dict[str, Any]:
        clone = _clone(type(self), kwargs)
        output = run_sync(clone.execute(**_nested(kwargs)))
        return _as_v1_result(output)

    attrs: dict[str, Any] = {
        "_vix_v1": True,
        "_vix_schema": schema,
        "INPUT_TYPES": classmethod(lambda cls: input_types(node_class.define_schema())),
        "RETURN_TYPES": tuple(_output_type(o) for o in schema.outputs),
        "RETURN_NAMES": tuple(o.name for o in schema.outputs),
        "OUTPUT_IS_LIST": tuple(o.is_output_list for o in schema.outputs),
        "OUTPUT_TOOLTIPS": tuple(o.tooltip or "" for o in schema.outputs),
        "FUNCTION": FUNCTION,
        FUNCTION: _vix_execute,
        "CATEGORY": schema.category,
        "DESCRIPTION": schema.description,
        "OUTPUT_NODE": bool(schema.is_output_node),
        "INPUT_IS_LIST": bool(schema.is_input_list),
        "NOT_IDEMPOTENT": bool(schema.not_idempotent),
        "DEPRECATED": bool(schema.is_deprecated),
        "EXPERIMENTAL": bool(schema.is_experimental),
        "DEV_ONLY": bool(schema.is_dev_only),
        "API_NODE": bool(schema.is_api_node),
        "SEARCH_ALIASES": list(schema.search_aliases),
    }
    if any(isinstance(o, io.MatchType.Output) for o in schema.outputs):
        attrs["OUTPUT_MATCHTYPES"] = tuple(o.template.template_id if isinstance(o, io.MatchType.Output) else None
                                           for o in schema.outputs)
    if live:
        hidden = {io.Hidden(h).name: io.Hidden(h).value for h in schema.hidden}
        attrs["_vix_input_types"] = classmethod(
            lambda cls, values: {**dynamic.expand(node_class.define_schema().inputs, values).spec,
                                 **({"hidden": hidden} if hidden else {})})
    if hasattr(node_class, "validate_inputs"):
        attrs["VALIDATE_INPUTS"] = node_class.validate_inputs
    fingerprint = getattr(node_class, "fingerprint_inputs", None)
    if fingerprint is not None:
        attrs["IS_CHANGED"] = (classmethod(lambda cls, **kwargs: fingerprint(**_nested(kwargs))) if live
                               else fingerprint)
    lazy = getattr(node_class, "check_lazy_status", None)
    if lazy is not None:
        def check_lazy_status(self: Any, **kwargs: Any) -> Any:
            clone = _clone(type(self), kwargs)
            return run_sync(getattr(lazy, "__func__", lazy)(clone, **_nested(kwargs)))

        attrs["check_lazy_status"] = check_lazy_status
    return type(node_class.__name__, (node_class,), attrs)


def _output_type(output: io.OutputSpec) -> str:
    """An output's V1 type; a MatchType output is any of its template's allowed types (what is linked to the
    template's inputs decides which, so links from it are checked against the union)."""
    if isinstance(output, io.MatchType.Output):
        return output.template.allowed
    return output.io_type


def _as_v1_result(output: Any) -> Any:
    if not isinstance(output, io.NodeOutput):
        return output  # a tuple or a V1 dict: the executor checks it
    result: dict[str, Any] = {"result": tuple(output.args), "ui": ui.as_ui_dict(output.ui)}
    if output.expand is not None:
        result["expand"] = output.expand
    return result
