"""workers.resources (the device's and the host's memory, as the worker last measured them) and workers.stopped_at
(when the worker said it was shutting down; NULL while it runs)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.types.TypeEngine[Any]:
    return (sa.DateTime(timezone=True)
            .with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
            .with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"))


def upgrade() -> None:
    op.add_column("workers", sa.Column("resources", sa.JSON(), nullable=True))
    op.add_column("workers", sa.Column("stopped_at", _utc(), nullable=True))


def downgrade() -> None:
    op.drop_column("workers", "stopped_at")
    op.drop_column("workers", "resources")
