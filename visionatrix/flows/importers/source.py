"""Reading a flow file into plain JSON data, with errors that say what and where."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from visionatrix.errors import InvalidFlow

MAX_FLOW_BYTES = 32 * 1024 * 1024
"""A flow file larger than this is refused before it is read (the largest published flow is ~60 KB)."""


def read_json_file(path: Path) -> Any:
    """Parse ``path`` as JSON; raise :class:`InvalidFlow` for a missing file, bad encoding or bad JSON."""
    if not path.exists():
        raise InvalidFlow(f"flow file not found: {path}")
    if not path.is_file():
        raise InvalidFlow(f"not a file: {path}")
    size = path.stat().st_size
    if size > MAX_FLOW_BYTES:
        raise InvalidFlow(f"{path}: {size} bytes is over the limit of {MAX_FLOW_BYTES} bytes for a flow file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidFlow(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise InvalidFlow(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    return parse_json_text(text, str(path))


def parse_json_text(text: str, where: str) -> Any:
    """Parse JSON text; a syntax error names the line and column."""
    if not text.strip():
        raise InvalidFlow(f"{where}: the file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidFlow(f"{where}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except RecursionError:
        raise InvalidFlow(f"{where}: JSON nested too deeply") from None
