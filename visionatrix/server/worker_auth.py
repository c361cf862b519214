"""The worker credentials (``WORKER_AUTH``): what the routes under ``/vapi/worker/`` require when they are set.

``user:password`` → ``Authorization: Basic base64(user:password)``; a value without ``:`` is a token →
``Authorization: Bearer <token>``. A request without them, or with wrong ones, is answered 401 ``unauthorized``
with a ``WWW-Authenticate`` challenge. The comparison takes the same time whatever the given value is (both sides
are hashed first, so not even the length leaks). The sign-in middleware (``signin.py``) applies it on the worker
routes, beside worker tokens.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

REALM = "visionatrix workers"


class WorkerCredentials:
    """The expected ``Authorization`` of a worker, built from the ``WORKER_AUTH`` value."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("worker credentials must not be empty")
        self.scheme = "Basic" if ":" in secret else "Bearer"
        self._expected = hashlib.sha256(secret.encode()).digest()

    @property
    def challenge(self) -> str:
        """The ``WWW-Authenticate`` value of a 401."""
        return f'{self.scheme} realm="{REALM}"'

    def accepts(self, authorization: str | None) -> bool:
        """Whether ``authorization`` (the header's value) carries these credentials."""
        given = self._given(authorization or "") or b""  # empty never matches: the secret is not empty
        return hmac.compare_digest(hashlib.sha256(given).digest(), self._expected)

    def _given(self, authorization: str) -> bytes | None:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() != self.scheme.lower():
            return None
        value = value.strip()
        if self.scheme == "Bearer":
            return value.encode()
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return None
