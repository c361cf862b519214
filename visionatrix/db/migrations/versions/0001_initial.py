"""tasks, task_files and workers

Revision ID: 0001
Revises:
Create Date: 2026-11-30

Plain SQLAlchemy types only (no application imports), so this script keeps working whatever ``tables.py`` becomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql, postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MYSQL: dict[str, Any] = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}


def _id() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _utc() -> sa.types.TypeEngine[Any]:
    return (sa.DateTime(timezone=True)
            .with_variant(postgresql.TIMESTAMP(timezone=True), "postgresql")
            .with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb"))


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("flow", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("graph", sa.JSON(), nullable=False),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.Column("current_node", sa.String(255), nullable=True),
        sa.Column("worker_id", sa.String(255), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("timings", sa.JSON(), nullable=False),
        sa.Column("lease_token", sa.String(64), nullable=True),
        sa.Column("lease_expires_at", _utc(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("started_at", _utc(), nullable=True),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sa.CheckConstraint("status IN ('pending', 'running', 'finished', 'failed', 'cancelled')",
                           name=op.f("ck_tasks_status")),
        sqlite_autoincrement=True,
        **MYSQL,
    )
    op.create_index("ix_tasks_claim", "tasks", ["status", sa.text("priority DESC"), "id"])
    op.create_index("ix_tasks_claim_flow", "tasks", ["flow", "status", sa.text("priority DESC"), "id"])
    op.create_index("ix_tasks_status_id", "tasks", ["status", "id"])

    op.create_table(
        "task_files",
        sa.Column("id", _id(), primary_key=True, autoincrement=True),
        sa.Column("task_id", _id(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("node_id", sa.String(255), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("param", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_task_files"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], name="fk_task_files_task_id_tasks", ondelete="CASCADE"),
        sa.UniqueConstraint("task_id", "kind", "name", name="uq_task_files_task_id_kind_name"),
        sa.CheckConstraint("kind IN ('input', 'output')", name=op.f("ck_task_files_kind")),
        **MYSQL,
    )

    op.create_table(
        "workers",
        sa.Column("worker_id", sa.String(255), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("device", sa.String(64), nullable=False),
        sa.Column("installed_flows", sa.JSON(), nullable=False),
        sa.Column("current_task_id", sa.BigInteger(), nullable=True),
        sa.Column("last_seen_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name="pk_workers"),
        **MYSQL,
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_table("task_files")
    op.drop_table("tasks")
