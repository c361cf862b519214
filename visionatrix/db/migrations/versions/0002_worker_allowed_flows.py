"""workers.allowed_flows: the flows an admin lets a worker take (NULL: every flow it has installed)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("workers", sa.Column("allowed_flows", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("workers", "allowed_flows")
