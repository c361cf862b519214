"""The ``comfy_api.latest.io`` stand-in: V3 node schemas (``io.ComfyNode``, ``io.Schema``, typed inputs and
outputs, ``io.NodeOutput``), written from the public V3 documentation. Imports no torch.

A V3 node is a class with the classmethods ``define_schema()`` (an :class:`Schema`) and ``execute(**inputs)`` (an
:class:`NodeOutput`); :mod:`visionatrix.nodes.v3.adapter` turns it into the V1 shape our registry, validation and
executor use (``INPUT_TYPES``, ``RETURN_TYPES``, ``FUNCTION``...).
"""

from __future__ import annotations

import copy
import enum
from typing import Any, ClassVar

# V3 keyword -> the V1 option name it becomes in INPUT_TYPES (None: left out of the V1 options)
_OPTION_NAMES = {
    "default": "default", "min": "min", "max": "max", "step": "step", "round": "round",
    "multiline": "multiline", "placeholder": "placeholder", "label_on": "label_on", "label_off": "label_off",
    "tooltip": "tooltip", "lazy": "lazy", "force_input": "forceInput", "display_mode": "display",
    "control_after_generate": "control_after_generate", "dynamic_prompts": "dynamicPrompts",
    "upload": "image_upload", "image_folder": "image_folder", "socketless": "socketless",
    "advanced": "advanced", "raw_link": "rawLink",
}


class NumberDisplay(enum.StrEnum):
    number = "number"
    slider = "slider"


class Hidden(enum.StrEnum):
    """Hidden inputs a node may ask for; it reads them as ``cls.hidden.<name>`` (None where we have none)."""

    unique_id = "UNIQUE_ID"
    prompt = "PROMPT"
    extra_pnginfo = "EXTRA_PNGINFO"
    dynprompt = "DYNPROMPT"
    auth_token_comfy_org = "AUTH_TOKEN_COMFY_ORG"
    api_key_comfy_org = "API_KEY_COMFY_ORG"


class HiddenHolder:
    """What ``cls.hidden`` is while a V3 node runs."""

    def __init__(self, values: dict[str, Any] | None = None) -> None:
        for member in Hidden:
            setattr(self, member.name, (values or {}).get(member.name))


class InputSpec:
    """One V3 input; ``as_v1()`` is its ``INPUT_TYPES`` entry ``(type, options)``."""

    io_type: ClassVar[str] = "*"

    def __init__(self, id: str, display_name: str | None = None, optional: bool = False,
                 tooltip: str | None = None, lazy: bool | None = None, extra_dict: dict[str, Any] | None = None,
                 **options: Any) -> None:
        self.id = id
        self.display_name = display_name
        self.optional = optional
        self.options = {"tooltip": tooltip, "lazy": lazy, **options}
        self.extra_dict = dict(extra_dict or {})

    def v1_type(self) -> Any:
        return self.io_type

    def v1_options(self) -> dict[str, Any]:
        options = {_OPTION_NAMES[k]: _plain(v) for k, v in self.options.items() if v is not None and k in _OPTION_NAMES}
        if self.display_name:
            options["display_name"] = self.display_name
        return {**options, **self.extra_dict}

    def as_v1(self) -> tuple[Any, dict[str, Any]]:
        return (self.v1_type(), self.v1_options())


class ComboInputSpec(InputSpec):
    io_type: ClassVar[str] = "COMBO"

    def __init__(self, id: str, options: Any = None, display_name: str | None = None,
                 optional: bool = False, tooltip: str | None = None, lazy: bool | None = None, **kwargs: Any) -> None:
        super().__init__(id, display_name, optional, tooltip, lazy, **kwargs)
        if isinstance(options, type) and issubclass(options, enum.Enum):
            options = [member.value for member in options]
        self.choices = [_plain(o) for o in (options or [])]

    def v1_type(self) -> Any:
        return list(self.choices)


class MultiTypeInputSpec(InputSpec):
    """An input accepting several types (``io.MultiType.Input(id, types=[io.Image, io.Mask])``)."""

    def __init__(self, id: Any, types: list[Any] | None = None, **kwargs: Any) -> None:
        if isinstance(id, InputSpec):  # MultiType.Input(io.Image.Input("x"), types=[...])
            kwargs = {"display_name": id.display_name, "optional": id.optional, **id.options, **kwargs}
            types = [type(id), *(types or [])]
            id = id.id
        super().__init__(id, **kwargs)
        self.types = [getattr(t, "io_type", str(t)) for t in types or []]

    def v1_type(self) -> Any:
        return ",".join(dict.fromkeys(self.types)) or "*"


class OutputSpec:
    io_type: ClassVar[str] = "*"

    def __init__(self, id: str | None = None, display_name: str | None = None,
                 tooltip: str | None = None, is_output_list: bool = False, **_ignored: Any) -> None:
        self.id = id
        self.display_name = display_name
        self.tooltip = tooltip
        self.is_output_list = is_output_list

    @property
    def name(self) -> str:
        return self.display_name or self.id or self.io_type


def _comfy_type(name: str, io_type: str, input_base: type[InputSpec] = InputSpec) -> type:
    """A V3 type: a class with ``io_type`` and nested ``Input``/``Output`` classes."""
    input_cls = type("Input", (input_base,), {"io_type": io_type, "__qualname__": f"{name}.Input"})
    output_cls = type("Output", (OutputSpec,), {"io_type": io_type, "__qualname__": f"{name}.Output"})
    return type(name, (), {"io_type": io_type, "Input": input_cls, "Output": output_cls})


def Custom(io_type: str) -> type:
    """A type of a pack's own (``io.Custom("MY_TYPE")``)."""
    return _comfy_type(io_type.title().replace("_", ""), io_type)


Int = _comfy_type("Int", "INT")
Float = _comfy_type("Float", "FLOAT")
String = _comfy_type("String", "STRING")
Boolean = _comfy_type("Boolean", "BOOLEAN")
Combo = _comfy_type("Combo", "COMBO", ComboInputSpec)
Image = _comfy_type("Image", "IMAGE")
Mask = _comfy_type("Mask", "MASK")
Latent = _comfy_type("Latent", "LATENT")
Conditioning = _comfy_type("Conditioning", "CONDITIONING")
Model = _comfy_type("Model", "MODEL")
Clip = _comfy_type("Clip", "CLIP")
Vae = _comfy_type("Vae", "VAE")
ClipVision = _comfy_type("ClipVision", "CLIP_VISION")
ClipVisionOutput = _comfy_type("ClipVisionOutput", "CLIP_VISION_OUTPUT")
ControlNet = _comfy_type("ControlNet", "CONTROL_NET")
UpscaleModel = _comfy_type("UpscaleModel", "UPSCALE_MODEL")
Sampler = _comfy_type("Sampler", "SAMPLER")
Sigmas = _comfy_type("Sigmas", "SIGMAS")
Noise = _comfy_type("Noise", "NOISE")
Guider = _comfy_type("Guider", "GUIDER")
AnyType = _comfy_type("AnyType", "*")
MultiType = _comfy_type("MultiType", "*", MultiTypeInputSpec)


# -- dynamic inputs (their inputs in a graph follow the node's values there; see visionatrix.nodes.v3.dynamic) ----

AUTOGROW = "COMFY_AUTOGROW_V3"
DYNAMIC_COMBO = "COMFY_DYNAMICCOMBO_V3"
MATCH_TYPE = "COMFY_MATCHTYPE_V3"
MAX_AUTOGROW_NAMES = 100


def v1_inputs(inputs: list[InputSpec]) -> dict[str, dict[str, Any]]:
    """``{"required": {...}, "optional": {...}}`` of V3 inputs (``optional`` only when there is one)."""
    spec: dict[str, dict[str, Any]] = {"required": {}}
    for item in inputs:
        spec.setdefault("optional" if item.optional else "required", {})[item.id] = item.as_v1()
    return spec


class DynamicInputSpec(InputSpec):
    """An input that stands for other inputs (``Autogrow``, ``DynamicCombo``)."""


class _AutogrowTemplate:
    def __init__(self, input: InputSpec, names: list[str], min: int) -> None:
        if isinstance(input, DynamicInputSpec):
            raise TypeError("an Autogrow template cannot be a dynamic input")
        if min < 0:
            raise ValueError(f"Autogrow min must be 0 or more, got {min}")
        self.input = copy.copy(input)
        self.input.options = dict(input.options)
        if isinstance(self.input.v1_type(), list) or self.input.io_type in ("INT", "FLOAT", "STRING", "BOOLEAN"):
            self.input.options["force_input"] = True  # a slot to link, never a widget
        self.names = list(names)
        self.min = min

    def as_dict(self) -> dict[str, Any]:
        return {"input": v1_inputs([self.input])}


class _AutogrowInput(DynamicInputSpec):
    io_type: ClassVar[str] = AUTOGROW

    def __init__(self, id: str, template: _AutogrowTemplate, display_name: str | None = None,
                 optional: bool = False, tooltip: str | None = None, lazy: bool | None = None,
                 extra_dict: dict[str, Any] | None = None) -> None:
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
        self.template = template

    def v1_options(self) -> dict[str, Any]:
        return {**super().v1_options(), "template": self.template.as_dict()}


class Autogrow:
    """A growing list of inputs made from one template input: ``names`` or ``prefix`` + 0, 1, ... up to ``max``;
    ``execute`` gets ``{name: value}`` of the ones the graph gives."""

    io_type = AUTOGROW
    Input = _AutogrowInput

    class TemplatePrefix(_AutogrowTemplate):
        def __init__(self, input: InputSpec, prefix: str, min: int = 1, max: int = 10) -> None:
            if not 1 <= max <= MAX_AUTOGROW_NAMES:
                raise ValueError(f"Autogrow max must be 1 to {MAX_AUTOGROW_NAMES}, got {max}")
            super().__init__(input, [f"{prefix}{i}" for i in range(max)], min)
            self.prefix = prefix
            self.max = max

        def as_dict(self) -> dict[str, Any]:
            return {**super().as_dict(), "prefix": self.prefix, "min": self.min, "max": self.max}

    class TemplateNames(_AutogrowTemplate):
        def __init__(self, input: InputSpec, names: list[str], min: int = 1) -> None:
            super().__init__(input, list(names)[:MAX_AUTOGROW_NAMES], min)

        def as_dict(self) -> dict[str, Any]:
            return {**super().as_dict(), "names": list(self.names), "min": self.min}


class _DynamicComboOption:
    def __init__(self, key: str, inputs: list[InputSpec] | None = None) -> None:
        self.key = key
        self.inputs = list(inputs or [])

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "inputs": v1_inputs(self.inputs)}


class _DynamicComboInput(DynamicInputSpec):
    io_type: ClassVar[str] = DYNAMIC_COMBO

    def __init__(self, id: str, options: list[_DynamicComboOption], display_name: str | None = None,
                 optional: bool = False, tooltip: str | None = None, lazy: bool | None = None,
                 extra_dict: dict[str, Any] | None = None) -> None:
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict)
        self.choices = list(options)
        keys = [o.key for o in self.choices]
        if len(set(keys)) != len(keys):
            raise ValueError(f"DynamicCombo {id!r}: option keys must be unique, got {keys}")

    def v1_options(self) -> dict[str, Any]:
        return {**super().v1_options(), "options": [o.as_dict() for o in self.choices]}


class DynamicCombo:
    """A combo whose chosen option brings its own inputs; ``execute`` gets ``{"<combo id>": key, <the option's
    inputs>}``."""

    io_type = DYNAMIC_COMBO
    Option = _DynamicComboOption
    Input = _DynamicComboInput


class _MatchTemplate:
    def __init__(self, template_id: str, allowed_types: Any = None) -> None:
        allowed = allowed_types if isinstance(allowed_types, list | tuple) else [allowed_types or AnyType]
        for kind in allowed:
            if not isinstance(getattr(kind, "io_type", None), str):
                raise ValueError(f"MatchType allowed types must be V3 types (io.Image, ...), got {kind!r}")
        self.template_id = template_id
        self.allowed_types = list(allowed)

    @property
    def allowed(self) -> str:
        """The allowed types as one union (``*``: any)."""
        return ",".join(dict.fromkeys(kind.io_type for kind in self.allowed_types))

    def as_dict(self) -> dict[str, Any]:
        return {"template_id": self.template_id, "allowed_types": self.allowed}


class _MatchTypeInput(InputSpec):
    io_type: ClassVar[str] = MATCH_TYPE

    def __init__(self, id: str, template: _MatchTemplate, display_name: str | None = None,
                 optional: bool = False, tooltip: str | None = None, lazy: bool | None = None,
                 extra_dict: dict[str, Any] | None = None, **options: Any) -> None:
        super().__init__(id, display_name, optional, tooltip, lazy, extra_dict, **options)
        self.template = template

    def v1_options(self) -> dict[str, Any]:
        return {**super().v1_options(), "template": self.template.as_dict()}


class _MatchTypeOutput(OutputSpec):
    io_type: ClassVar[str] = MATCH_TYPE

    def __init__(self, template: _MatchTemplate, id: str | None = None, display_name: str | None = None,
                 tooltip: str | None = None, is_output_list: bool = False, **_ignored: Any) -> None:
        super().__init__(id, display_name or (None if id else "MATCHTYPE"), tooltip, is_output_list)
        self.template = template


class MatchType:
    """Inputs and outputs sharing a ``Template`` take the type of what is linked to them (one of its allowed
    types)."""

    io_type = MATCH_TYPE
    Template = _MatchTemplate
    Input = _MatchTypeInput
    Output = _MatchTypeOutput


class Schema:
    """A V3 node's description; fields this stand-in does not use are accepted and ignored."""

    def __init__(self, node_id: str, display_name: str | None = None, category: str = "sd",
                 inputs: list[InputSpec] | None = None, outputs: list[OutputSpec] | None = None,
                 hidden: list[Hidden] | None = None, description: str = "", search_aliases: list[str] | None = None,
                 is_input_list: bool = False, is_output_node: bool = False, is_deprecated: bool = False,
                 is_experimental: bool = False, is_dev_only: bool = False, is_api_node: bool = False,
                 not_idempotent: bool = False, enable_expand: bool = False, **_ignored: Any) -> None:
        self.node_id = node_id
        self.display_name = display_name
        self.category = category
        self.inputs = list(inputs or [])
        self.outputs = list(outputs or [])
        self.hidden = list(hidden or [])
        self.description = description
        self.search_aliases = list(search_aliases or [])
        self.is_input_list = is_input_list
        self.is_output_node = is_output_node
        self.is_deprecated = is_deprecated
        self.is_experimental = is_experimental
        self.is_dev_only = is_dev_only
        self.is_api_node = is_api_node
        self.not_idempotent = not_idempotent
        self.enable_expand = enable_expand


class NodeOutput:
    """What ``execute`` returns: the outputs in schema order, optional ``ui`` and ``expand`` (a subgraph)."""

    def __init__(self, *args: Any, ui: Any = None, expand: dict[str, Any] | None = None,
                 block_execution: str | None = None) -> None:
        self.args = args
        self.ui = ui
        self.expand = expand
        self.block_execution = block_execution

    @property
    def result(self) -> tuple[Any, ...] | None:
        return self.args or None


class ComfyNode:
    """Base class of V3 nodes: subclasses define the classmethods ``define_schema`` and ``execute``; they may
    add ``validate_inputs``, ``fingerprint_inputs`` and ``check_lazy_status`` (classmethods too)."""

    hidden: ClassVar[HiddenHolder] = HiddenHolder()

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError(f"{cls.__name__} does not define define_schema()")

    @classmethod
    def execute(cls, **kwargs: Any) -> NodeOutput:
        raise NotImplementedError(f"{cls.__name__} does not define execute()")


ComfyNodeV3 = ComfyNode


class ComfyExtension:
    """What a V3 pack's ``comfy_entrypoint()`` returns: ``get_node_list()`` names its node classes."""

    async def on_load(self) -> None:
        return None

    async def get_node_list(self) -> list[type[ComfyNode]]:
        raise NotImplementedError(f"{type(self).__name__} does not define get_node_list()")


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value
