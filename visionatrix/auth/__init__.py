"""Users, passwords and bearer tokens (web UI sessions, API tokens, worker tokens): ``docs/security.md``.

Depends on ``db`` only; the server's sign-in middleware and the ``users`` command use it.
"""
