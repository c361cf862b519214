"""tasks.peak_vram_bytes (the most GPU memory torch held during the run, as the worker measured it; NULL on a CPU
worker and until the run ends)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("peak_vram_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    op.drop_column("tasks", "peak_vram_bytes")
