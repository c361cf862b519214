"""Reading a VixUi list's ``possible_values``: a JSON list of values or a JSON dict of label -> value."""

from __future__ import annotations

import json
from typing import Any

from visionatrix.errors import InvalidInput


def parse_possible_values(text: Any) -> list[Any] | dict[str, Any]:
    """The parsed ``possible_values``; anything but a JSON list or object is an :class:`InvalidInput`."""
    if not isinstance(text, str):
        raise InvalidInput("possible_values", f"expected JSON text, got {type(text).__name__}")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput("possible_values", f"not valid JSON: {exc.msg} at position {exc.pos}") from exc
    if not isinstance(parsed, list | dict):
        raise InvalidInput("possible_values", f"expected a JSON list or object, got {type(parsed).__name__}")
    return parsed


def map_choice(value: Any, possible_values: list[Any] | dict[str, Any]) -> Any:
    """The value a choice stands for: the mapped value when the list is a dict with that key, else the choice."""
    if isinstance(possible_values, dict) and isinstance(value, str) and value in possible_values:
        return possible_values[value]
    return value


def position_of(value: Any, possible_values: list[Any] | dict[str, Any]) -> int:
    """The 0-based position of ``value`` among the choices (dict keys in their written order)."""
    options = list(possible_values)
    if value not in options:
        raise InvalidInput("default_value", f"{value!r} is not one of the possible values {options!r}")
    return options.index(value)
