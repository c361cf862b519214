"""JSON in and out.

Out: datetimes as ISO 8601 text, paths and enums as strings.

In (:func:`loads`, the one reader of every JSON body, form field and query value the server takes): UTF-8 only (a
leading byte-order mark is skipped), at most ``MAX_DEPTH`` nested arrays/objects, integers of at most
``MAX_INT_DIGITS`` digits, finite numbers only (no ``NaN``/``Infinity`` literals, no ``1e999``), and strings free of
lone UTF-16 surrogates (``"\\ud800"``) and NUL characters (``"\\u0000"``), which no database column nor UTF-8 file
can hold. Anything else is :class:`JsonRefused`, whose message names the problem; the callers turn it into their
route's 400.
"""

from __future__ import annotations

import asyncio
import enum
import json
import math
import re
from datetime import datetime
from pathlib import PurePath
from typing import Any

MAX_DEPTH = 64
"""Nesting of arrays and objects a JSON document may have (a flow or a prompt with its editor workflow needs ~10)."""
MAX_INT_DIGITS = 300
"""Digits an integer may have: every accepted integer converts to a float (Python refuses to parse past 4,300)."""
THREAD_BYTES = 256 * 1024
"""Documents larger than this are parsed in a thread, off the event loop (:func:`loads_async`)."""

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_LONG_NUMBER = re.compile(rf"[0-9]{{{MAX_INT_DIGITS + 1}}}")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


class JsonRefused(ValueError):
    """A JSON text the server does not take; the message says why (``is not valid JSON: ...``)."""


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, PurePath):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_default, ensure_ascii=False)


def _refuse_constant(name: str) -> Any:
    raise JsonRefused(f"holds {name}, which is not a JSON number (only finite numbers are taken)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused(f"holds the number {text[:40]}, too large for a float (only finite numbers are taken)")
    return value


def _check_depth(outside_strings: str) -> None:
    """Refuse more than ``MAX_DEPTH`` levels of a valid JSON text (whose brackets pair up), strings taken out."""
    brackets = _NOT_BRACKET.sub("", outside_strings)
    for _level in range(MAX_DEPTH):
        if not brackets:
            return
        brackets = brackets.replace("[]", "").replace("{}", "")
    if brackets:
        raise JsonRefused(f"is nested too deeply (more than {MAX_DEPTH} levels)")


def _check_strings(text: str, value: Any) -> None:
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise JsonRefused("holds a NUL character (\\u0000) in a string")
    if _SURROGATE_ESCAPE.search(text):  # pairs are fine (one character); a lone half cannot be stored
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise JsonRefused("holds a lone UTF-16 surrogate (\\ud800 to \\udfff without its pair) in a string"
                              ) from None


def loads(data: bytes | str) -> Any:
    """``data`` parsed as JSON under the rules of this module; :class:`JsonRefused` names what is wrong."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonRefused(f"is not UTF-8 text (byte {exc.start})") from None
    else:
        text = data
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise JsonRefused(f"is not UTF-8 text (character {exc.start})") from None
    text = text.removeprefix("\ufeff")
    outside_strings = _STRING.sub('""', text)
    if _LONG_NUMBER.search(outside_strings):
        raise JsonRefused(f"holds a number of more than {MAX_INT_DIGITS} digits")
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise JsonRefused(f"is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise JsonRefused(f"is nested too deeply (more than {MAX_DEPTH} levels)") from None
    _check_depth(outside_strings)
    _check_strings(text, value)
    return value


async def loads_async(data: bytes | str) -> Any:
    """:func:`loads`, in a thread when ``data`` is large enough to hold up the event loop."""
    if len(data) > THREAD_BYTES:
        return await asyncio.to_thread(loads, data)
    return loads(data)
