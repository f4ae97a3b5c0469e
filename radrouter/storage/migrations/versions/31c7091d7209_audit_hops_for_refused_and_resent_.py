"""audit hops for refused and resent instances; resent copies kept apart

Revision ID: 31c7091d7209
Revises: 1ebd2850f80e
Create Date: 2026-12-01 16:12:19.781237
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "31c7091d7209"
down_revision: str | None = "1ebd2850f80e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


#: Audit hops added by this revision: PostgreSQL's native enum type needs them added.
NEW_HOPS = ("STORE_REFUSED", "RESENT")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for hop in NEW_HOPS:
            op.execute(f"ALTER TYPE hop ADD VALUE IF NOT EXISTS '{hop}'")
    op.create_table(
        "resent_instances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sop_uid", sa.String(length=64), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(length=400), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("calling_ae", sa.String(length=16), nullable=True),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("resent_instances", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_resent_instances_sop_uid"), ["sop_uid"], unique=False)
        batch_op.create_index(batch_op.f("ix_resent_instances_study_uid"), ["study_uid"], unique=False)


def downgrade() -> None:
    """The hops stay: PostgreSQL cannot drop a value from an enum type."""
    op.drop_table("resent_instances")
