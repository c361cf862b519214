"""Readable one-line messages from pydantic validation errors."""

from __future__ import annotations

from pydantic import ValidationError


def validation_message(exc: ValidationError, prefix: str = "") -> str:
    """Every problem as ``where: what``, joined by ``; `` (``where`` is the dotted field path)."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in (prefix, *error["loc"]) if part != "")
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)
