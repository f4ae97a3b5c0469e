"""UPS subscriptions: deletion locks and filtered global subscriptions; workitems kept for a lock

Revision ID: 5c2e9a7d41b3
Revises: dd1f6aac3c7a
Create Date: 2026-12-01 20:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5c2e9a7d41b3"
down_revision: str | None = "dd1f6aac3c7a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ups_subscriptions") as table:
        table.add_column(sa.Column("deletion_lock", sa.Boolean(), nullable=False, server_default=sa.false()))
        table.add_column(sa.Column("filter", sa.JSON(), nullable=True))
    with op.batch_alter_table("workitems") as table:
        table.add_column(sa.Column("kept_for_lock", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("workitems") as table:
        table.drop_column("kept_for_lock")
    with op.batch_alter_table("ups_subscriptions") as table:
        table.drop_column("filter")
        table.drop_column("deletion_lock")
