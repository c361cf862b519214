"""Parameter attributes of Visionatrix input nodes: from ``input;...`` titles or from ``VixUi*`` node inputs.

Title syntax (visionatrix.md §4.3): ``input;Display Name;optional;advanced;order=N;custom_id=x;mask;
source_input_name=y``. Parts are trimmed; every part after the display name is read lower-cased (as Visionatrix
does), ``key=value`` parts set a value (the first one wins), bare words set a flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from visionatrix.errors import InvalidFlow
from visionatrix.flows.graph import is_link

DEFAULT_ORDER = 99


@dataclass
class InputAttributes:
    """The attributes every Visionatrix input parameter carries."""

    display_name: str = ""
    custom_id: str = ""
    optional: bool = False
    advanced: bool = False
    hidden: bool = False
    translatable: bool = False
    mask: bool = False
    order: int = DEFAULT_ORDER
    source_input_name: str | None = None


@dataclass
class ParsedTitle:
    display_name: str
    flags: set[str]
    values: dict[str, str]
    raw_values: dict[str, str]
    """Values with their original case (for things like trigger words)."""


def parse_title(title: str) -> ParsedTitle:
    """Split a ``prefix;Display;attr;key=value`` title into its display name, flags and values."""
    parts = [part.strip() for part in title.split(";")]
    flags: set[str] = set()
    values: dict[str, str] = {}
    raw_values: dict[str, str] = {}
    for part in parts[2:]:
        if "=" in part:
            key, raw = part.split("=", 1)
            key = key.strip().lower()
            values.setdefault(key, raw.strip().lower())
            raw_values.setdefault(key, raw.strip())
        elif part:
            flags.add(part.lower())
    return ParsedTitle(parts[1] if len(parts) > 1 else "", flags, values, raw_values)


def _whole_number(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise InvalidFlow(f"{what}: {value!r} is not a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise InvalidFlow(f"{what}: {value!r} is not a whole number")


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes", "y", "on"}
    return bool(value) if not is_link(value) else False


def from_title(node_id: str, title: str) -> InputAttributes:
    """Attributes from an ``input;...`` title."""
    parsed = parse_title(title)
    attrs = InputAttributes(display_name=parsed.display_name)
    for flag in ("optional", "advanced", "hidden", "translatable", "mask"):
        if flag in parsed.flags:
            setattr(attrs, flag, True)
    values = dict(parsed.values)
    if "order" in values:
        attrs.order = _whole_number(values.pop("order"), f"node {node_id} title {title!r}: order")
    attrs.custom_id = values.pop("custom_id", "")
    attrs.source_input_name = values.pop("source_input_name", None) or None
    for flag in ("optional", "advanced", "hidden", "translatable", "mask"):
        if flag in values:
            setattr(attrs, flag, _flag(values.pop(flag)))
    return attrs


def from_vix_inputs(node_id: str, inputs: dict[str, Any]) -> InputAttributes:
    """Attributes from the inputs of a ``VixUi*`` node (links are ignored: attributes must be constants)."""

    def constant(name: str, default: Any) -> Any:
        value = inputs.get(name, default)
        return default if value is None or is_link(value) else value

    display_name = constant("display_name", "")
    custom_id = constant("custom_id", "")
    source = constant("source_input_name", None)
    return InputAttributes(
        display_name=str(display_name),
        custom_id=str(custom_id).strip(),
        optional=_flag(constant("optional", False)),
        advanced=_flag(constant("advanced", False)),
        hidden=_flag(constant("hidden", False)),
        translatable=_flag(constant("translatable", False)),
        mask=_flag(constant("mask", False)),
        order=_whole_number(constant("order", DEFAULT_ORDER), f"node {node_id}: order"),
        source_input_name=str(source) if source else None,
    )
