"""task_files.kind may be 'temp': a task's temporary outputs (PreviewImage's images and any node's ``type: "temp"``
files), kept under ``temp/<task id>/`` and removed with the task or when they grow old

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ck_task_files_kind"


def _replace_check(condition: str) -> None:
    # SQLite cannot alter a constraint: batch mode copies the table (its reflected CHECK constraints included)
    with op.batch_alter_table("task_files", recreate="auto") as batch:
        batch.drop_constraint(op.f(NAME), type_="check")
        batch.create_check_constraint(op.f(NAME), condition)


def upgrade() -> None:
    _replace_check("kind IN ('input', 'output', 'temp')")


def downgrade() -> None:
    op.execute("DELETE FROM task_files WHERE kind = 'temp'")
    _replace_check("kind IN ('input', 'output')")
