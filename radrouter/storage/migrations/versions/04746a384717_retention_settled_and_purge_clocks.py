"""retention: settled and purge clocks

Revision ID: 04746a384717
Revises: dddd0d0f15d2
Create Date: 2026-12-01 13:41:48.556134
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "04746a384717"
down_revision: str | None = "dddd0d0f15d2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


#: Audit hops added by this revision: PostgreSQL's native enum type needs them added.
NEW_HOPS = ("PURGED",)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for hop in NEW_HOPS:
            op.execute(f"ALTER TYPE hop ADD VALUE IF NOT EXISTS '{hop}'")
    # Results and studies already in the index: nothing purged yet (NULL).
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.add_column(sa.Column("purged_at", sa.DateTime(), nullable=True))

    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("settled_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("purging_images_since", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("purging_results_since", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("images_purged_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("results_purged_at", sa.DateTime(), nullable=True))
    # Studies that had settled before: their retention clock starts at their last instance.
    op.execute("UPDATE studies SET settled_at = last_received_at WHERE state IN ('DONE', 'FAILED')")


def downgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_column("results_purged_at")
        batch_op.drop_column("images_purged_at")
        batch_op.drop_column("purging_results_since")
        batch_op.drop_column("purging_images_since")
        batch_op.drop_column("settled_at")

    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_column("purged_at")
