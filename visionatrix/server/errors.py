"""Errors about the shape of an HTTP request; the error middleware turns them into 400 (415, 429) responses."""

from __future__ import annotations

from typing import Any

from visionatrix.errors import VisionatrixError


class BadRequest(VisionatrixError):
    """The request is malformed."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        self.code = code
        self.details = details
        super().__init__(message)


class UnsupportedMediaType(BadRequest):
    """The request body has a content type this route does not take."""

    def __init__(self, content_type: str, accepted: list[str]) -> None:
        super().__init__("unsupported_media_type", f"content type {content_type!r} is not accepted here; "
                         f"send one of: {', '.join(accepted)}", {"accepted": accepted})


class TooManyRequests(BadRequest):
    """The caller is over a limit (pending tasks per user); answered 429."""
