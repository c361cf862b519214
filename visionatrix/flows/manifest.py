"""The typed description of a flow: what it is, which parameters it takes and where they go, what it produces.

A manifest is derived on import from a graph's Visionatrix markers or given explicitly next to a plain graph
(see ``docs/flows.md``). Parameters are bound to node inputs: ``bindings`` name the ``(node_id, input)`` pairs a
parameter's value is written to.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ParamType = Literal["text", "number", "range", "range_scale", "bool", "list", "image", "image_mask", "mask"]

FILE_PARAM_TYPES = frozenset({"image", "image_mask", "mask"})

FLOW_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*(?:\.[a-z0-9_-]+)*$")
PARAM_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


class Binding(BaseModel):
    """One node input a parameter's value is written to."""

    model_config = ConfigDict(extra="forbid")

    node_id: str = Field(min_length=1)
    input: str = Field(min_length=1)


class FlowInput(BaseModel):
    """One parameter a caller may (or must) give when running the flow."""

    model_config = ConfigDict(extra="forbid")

    name: str
    display_name: str = ""
    type: ParamType
    default: Any = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    integer: bool = False
    """Numbers are whole (``VixUiRangeInt``): a value like ``2.5`` is refused."""
    options: dict[str, Any] | None = None
    """For ``list``: each choice a caller may submit -> the value it stands for (identity for plain lists)."""
    node_maps_choice: bool = False
    """The bound node maps the choice itself (``VixUiList`` reads its ``possible_values``), so the choice is
    written; otherwise the value the choice stands for is written."""
    optional: bool = False
    advanced: bool = False
    hidden: bool = False
    order: int = 99
    source_input_name: str | None = None
    translatable: bool = False
    dynamic_lora: bool = False
    trigger_words: list[str] = Field(default_factory=list)
    bindings: list[Binding] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not PARAM_NAME_RE.match(value):
            raise ValueError(f"{value!r} is not a valid parameter name (letters, digits, '_', '-', '.')")
        return value

    @field_validator("options", mode="before")
    @classmethod
    def _options_from_list(cls, value: Any) -> Any:
        """A plain list of choices means each choice is written as is."""
        if isinstance(value, list):
            if not all(isinstance(item, str | int | float) and not isinstance(item, bool) for item in value):
                raise ValueError("options must be a mapping or a list of strings/numbers")
            return {str(item): item for item in value}
        return value

    @model_validator(mode="after")
    def _check_consistency(self) -> FlowInput:
        if self.type == "list" and not self.options:
            raise ValueError(f"list parameter {self.name!r} has no options")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"parameter {self.name!r}: min {self.min} is greater than max {self.max}")
        if self.type == "image_mask" and not self.source_input_name:
            raise ValueError(f"mask parameter {self.name!r} needs source_input_name (the image it masks)")
        return self

    @property
    def is_file(self) -> bool:
        return self.type in FILE_PARAM_TYPES


class FlowOutput(BaseModel):
    """An output node of the graph and the kind of result it produces."""

    model_config = ConfigDict(extra="forbid")

    node_id: str
    class_type: str
    type: str
    title: str = ""


class ModelRef(BaseModel):
    """A model file the flow loads, and its models-catalog entry when one matches; or a catalog entry such a model
    requires (``implied_by``), which no graph input names."""

    model_config = ConfigDict(extra="forbid")

    name: str
    """The catalog entry's name when matched, otherwise the file name the graph asks for."""
    node_id: str
    """The loader node; ``""`` for an implied entry."""
    input: str
    """The loader's input; ``""`` for an implied entry."""
    value: str
    """The file name the graph asks for; for an implied entry the catalog's ``filename``."""
    implied_by: str | None = None
    """The catalog entry whose ``requires`` lists this one; None for a model the graph loads."""
    in_catalog: bool = False
    url: str | None = None
    homepage: str | None = None
    hash: str | None = None
    types: list[str] = Field(default_factory=list)
    filename: str | None = None
    file_size: int | None = None
    gated: bool = False


class FlowManifest(BaseModel):
    """Everything Visionatrix knows about a flow besides its graph."""

    model_config = ConfigDict(extra="forbid")

    name: str
    display_name: str = ""
    description: str = ""
    version: str = "1.0.0"
    author: str = ""
    license: str = ""
    homepage: str = ""
    documentation: str = ""
    tags: list[str] = Field(default_factory=list)
    requires: list[str] = Field(default_factory=list)
    is_seed_supported: bool = False
    is_count_supported: bool = False
    is_translations_supported: bool = False
    is_macos_supported: bool = True
    hidden: bool = False
    required_memory_gb: float = Field(default=0, ge=0)
    inputs: list[FlowInput] = Field(default_factory=list)
    outputs: list[FlowOutput] = Field(default_factory=list)
    node_types: list[str] = Field(default_factory=list)
    models: list[ModelRef] = Field(default_factory=list)
    sub_flows: list[dict[str, Any]] = Field(default_factory=list)

    @field_validator("name", mode="before")
    @classmethod
    def _lower_name(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not FLOW_NAME_RE.match(value):
            raise ValueError(
                f"{value!r} is not a valid flow name (lower-case letters, digits, '_', '-', single dots; "
                "no path separators)"
            )
        return value

    @model_validator(mode="after")
    def _unique_inputs(self) -> FlowManifest:
        seen: set[str] = set()
        for item in self.inputs:
            if item.name in seen:
                raise ValueError(f"parameter name {item.name!r} is used twice")
            seen.add(item.name)
        return self

    def input(self, name: str) -> FlowInput | None:
        """The parameter called ``name``, if the flow has one."""
        return next((item for item in self.inputs if item.name == name), None)
