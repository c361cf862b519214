"""Input and output type rules: compatibility of linked types and coercion of constants. Imports no torch."""

from __future__ import annotations

import functools
import math
from typing import Any

ANY = "*"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def type_name(spec_type: Any) -> str:
    """A readable name for an input or output type (a list of options is a COMBO)."""
    return "COMBO" if isinstance(spec_type, list | tuple) else str(spec_type)


def types_compatible(received: Any, expected: Any) -> bool:
    """Whether an output of type ``received`` may feed an input of type ``expected``.

    ``*`` matches anything; comma-separated unions match when they intersect; a list-typed (COMBO) output
    feeds a COMBO input; a COMBO input also accepts STRING outputs.
    """
    if isinstance(expected, list | tuple) or expected == "COMBO":
        return isinstance(received, list | tuple) or received in (ANY, "COMBO", "STRING")
    if isinstance(received, list | tuple):
        return expected in (ANY, "COMBO", "STRING")
    if received == expected or ANY in (received, expected):
        return True
    return _unions_intersect(str(received), str(expected))


@functools.lru_cache(maxsize=1024)
def _unions_intersect(received: str, expected: str) -> bool:
    """Whether two comma-separated type unions share a type (a validation checks every link: cached)."""
    return bool({t.strip() for t in received.split(",")} & {t.strip() for t in expected.split(",")})


class CoercionError(ValueError):
    pass


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CoercionError("not a finite number")
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                return _to_int(float(value.strip()))
            except ValueError:
                raise CoercionError("not an integer") from None
    raise CoercionError(f"expected an integer, got {type(value).__name__}")


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise CoercionError("not a number") from None
    else:
        raise CoercionError(f"expected a number, got {type(value).__name__}")
    if not math.isfinite(result):
        raise CoercionError("not a finite number")
    return result


_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off", ""}


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise CoercionError(f"expected a boolean, got {value!r}")


def _to_str(value: Any) -> str:
    if isinstance(value, str | int | float | bool):
        return str(value)
    raise CoercionError(f"expected a string, got {type(value).__name__}")


_COERCERS = {"INT": _to_int, "FLOAT": _to_float, "BOOLEAN": _to_bool, "STRING": _to_str}


def coerce(spec_type: Any, value: Any) -> Any:
    """The constant converted to the input's widget type; other types pass through unchanged."""
    coercer = _COERCERS.get(spec_type) if isinstance(spec_type, str) else None
    return coercer(value) if coercer else value
