"""jobs record their triage and monitoring, and how often their worker was lost

Revision ID: dddd0d0f15d2
Revises: 014f1f2fe3cb
Create Date: 2026-12-01 13:44:36.556931
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "dddd0d0f15d2"
down_revision: str | None = "014f1f2fe3cb"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("triaged_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("monitored_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("aftercare_sent_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("worker_losses", sa.Integer(), nullable=False, server_default="0"))
    # Jobs that ended before this revision have no aftercare_sent_at: none of them is sent again.


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("worker_losses")
        batch_op.drop_column("aftercare_sent_at")
        batch_op.drop_column("monitored_at")
        batch_op.drop_column("triaged_at")
