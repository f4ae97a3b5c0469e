"""jobs record what the sanitiser repaired

Revision ID: 014f1f2fe3cb
Revises: b35e7a62ce14
Create Date: 2026-12-01 13:13:31.365482
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "014f1f2fe3cb"
down_revision: str | None = "b35e7a62ce14"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Jobs that ran before had nothing recorded: an empty list.
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("repairs", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("repairs")
