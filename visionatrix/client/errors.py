"""The one error the client raises for an error answer of the server."""

from __future__ import annotations

from typing import Any


class VixClientError(Exception):
    """The server answered with an error: ``status`` (HTTP), ``error`` (a stable code), ``message``, ``details``."""

    def __init__(self, status: int, error: str, message: str, details: Any = None) -> None:
        self.status = status
        self.error = error
        self.message = message
        self.details = details
        super().__init__(f"{status} {error}: {message}")
