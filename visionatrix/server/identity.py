"""Who is calling: the :class:`Identity` the sign-in middleware (``signin.py``) attaches to every request, and the
ownership rule every route shares — an admin (or anyone, when sign-in is off) sees every task; a user sees only
their own, and another user's task is answered 404 as if it did not exist."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from visionatrix.errors import NotFound


@dataclass(frozen=True)
class Identity:
    user_id: int | None
    """``users.id``; None for the open server (sign-in off), a worker and an anonymous caller."""
    name: str
    role: str
    """``admin``, ``user``, ``worker`` or ``anonymous``."""
    via: str
    """``open`` (sign-in off), ``session``, ``basic``, ``token``, ``worker_auth``, ``worker_token``, ``none``."""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def owner_filter(self) -> int | None:
        """The owner whose tasks this caller may see; None: every task (an admin, or sign-in off)."""
        return None if self.is_admin else (self.user_id if self.user_id is not None else -1)

    @property
    def owner_id(self) -> int | None:
        """The value a task this caller creates records as its owner."""
        return self.user_id

    @property
    def person(self) -> tuple[int | None, str, str]:
        """Who, whatever the way they signed in (a session and HTTP Basic of one user are the same person)."""
        return self.user_id, self.name, self.role

    def may_see(self, owner_id: int | None) -> bool:
        return self.is_admin or (self.user_id is not None and owner_id == self.user_id)


OPEN = Identity(user_id=None, name="", role="admin", via="open")
"""Sign-in off: the single person at their own machine may do everything."""
ANONYMOUS = Identity(user_id=None, name="", role="anonymous", via="none")

IDENTITY = web.RequestKey("vix_identity", Identity)


def identity(request: web.Request) -> Identity:
    """The caller of ``request`` (``OPEN`` where no sign-in middleware ran, as in an app without ``VIX_AUTH``)."""
    return request.get(IDENTITY, OPEN)


def check_owner(request: web.Request, owner_id: int | None, kind: str, ident: str) -> None:
    """``NotFound`` (so a user cannot tell another user's task from a missing one) unless the caller may see it."""
    if not identity(request).may_see(owner_id):
        raise NotFound(kind, ident)
