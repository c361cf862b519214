"""Alembic's environment: migrates the connection that ``visionatrix.db.migrate`` hands over."""

from __future__ import annotations

from alembic import context

from visionatrix.db import migrate

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through visionatrix.db.migrate (python -m visionatrix migrate), "
                       "which passes the connection to migrate")

context.configure(connection=connection, **migrate.context_options(connection))
with context.begin_transaction():
    context.run_migrations()
