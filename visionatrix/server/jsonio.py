"""JSON out: datetimes as ISO 8601 text, paths and enums as strings."""

from __future__ import annotations

import enum
import json
from datetime import datetime
from pathlib import PurePath
from typing import Any


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
