"""ComfyUI prompts as tasks: tasks.prompt_id (unique), tasks.client_id, tasks.prompt_extra; node_sets (the node
types of each ad-hoc graph kind, so a worker takes only graphs whose every node type it has)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def _utc() -> sa.types.TypeEngine[Any]:
    return (sa.DateTime(timezone=True)
            .with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
            .with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"))


def upgrade() -> None:
    op.add_column("tasks", sa.Column("prompt_id", sa.String(36), nullable=True))
    op.add_column("tasks", sa.Column("client_id", sa.String(255), nullable=True))
    op.add_column("tasks", sa.Column("prompt_extra", sa.JSON(), nullable=True))
    op.create_index("ix_tasks_prompt_id", "tasks", ["prompt_id"], unique=True)
    op.create_table(
        "node_sets",
        sa.Column("flow", sa.String(64), nullable=False),
        sa.Column("node_types", sa.JSON(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("flow", name="pk_node_sets"),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("node_sets")
    op.drop_index("ix_tasks_prompt_id", table_name="tasks")
    op.drop_column("tasks", "prompt_extra")
    op.drop_column("tasks", "client_id")
    op.drop_column("tasks", "prompt_id")
