"""PostgreSQL: the claim indexes hold pending tasks only, the prompt index prompted tasks only (partial indexes);
the other databases keep theirs

Every claim and finish writes a new version of the task's row, and a new version enters every index whose condition
it meets: with these conditions a claimed or ended task no longer costs an entry in three of the six indexes of
``tasks`` (``docs/queue.md``, "Depth").

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES: tuple[tuple[str, list[sa.TextClause | str], bool, str], ...] = (
    ("ix_tasks_claim", ["status", sa.text("priority DESC"), "id"], False, "status = 'pending'"),
    ("ix_tasks_claim_flow", ["flow", "status", sa.text("priority DESC"), "id"], False, "status = 'pending'"),
    ("ix_tasks_prompt_id", ["prompt_id"], True, "prompt_id IS NOT NULL"),
)


def _rebuild(partial: bool) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, columns, unique, condition in INDEXES:
        op.drop_index(name, table_name="tasks")
        where = {"postgresql_where": sa.text(condition)} if partial else {}
        op.create_index(name, "tasks", columns, unique=unique, **where)


def upgrade() -> None:
    _rebuild(partial=True)


def downgrade() -> None:
    _rebuild(partial=False)
