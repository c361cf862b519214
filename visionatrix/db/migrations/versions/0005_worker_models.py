"""workers.models (the catalog models a worker has, the models it holds loaded and its installs in progress) and
worker_commands (what an admin asked a worker to do: install models, free memory; a worker takes its commands with
its next report)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def _utc() -> sa.types.TypeEngine[Any]:
    return (sa.DateTime(timezone=True)
            .with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
            .with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"))


def upgrade() -> None:
    op.add_column("workers", sa.Column("models", sa.JSON(), nullable=True))
    op.create_table(
        "worker_commands",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("worker_id", sa.String(255), nullable=False),
        sa.Column("command", sa.JSON(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_worker_commands"),
        **MYSQL,
    )
    op.create_index("ix_worker_commands_worker_id", "worker_commands", ["worker_id"])


def downgrade() -> None:
    op.drop_index("ix_worker_commands_worker_id", table_name="worker_commands")
    op.drop_table("worker_commands")
    op.drop_column("workers", "models")
