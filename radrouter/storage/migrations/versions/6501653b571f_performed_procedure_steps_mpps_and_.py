"""performed procedure steps (MPPS) and storage commitment requests

Revision ID: 6501653b571f
Revises: 842aa401c2af
Create Date: 2026-12-01 16:19:58.042909
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "6501653b571f"
down_revision: str | None = "842aa401c2af"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


#: Audit hops added by this revision: PostgreSQL's native enum type needs them added.
NEW_HOPS = ("INCOMPLETE",)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for hop in NEW_HOPS:
            op.execute(f"ALTER TYPE hop ADD VALUE IF NOT EXISTS '{hop}'")
    op.create_table(
        "commitment_requests",
        sa.Column("transaction_uid", sa.String(length=64), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("requested", sa.JSON(), nullable=False),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.Column("failed", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("transaction_uid"),
    )
    op.create_table(
        "performed_steps",
        sa.Column("uid", sa.String(length=64), nullable=False),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column(
            "status", sa.Enum("IN PROGRESS", "COMPLETED", "DISCONTINUED", name="stepstatus"), nullable=False
        ),
        sa.Column("calling_ae", sa.String(length=16), nullable=True),
        sa.Column("performed", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("used_at", sa.DateTime(), nullable=True),
        sa.Column("missing", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("uid"),
    )
    with op.batch_alter_table("performed_steps", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_performed_steps_study_uid"), ["study_uid"], unique=False)


def downgrade() -> None:
    # PostgreSQL cannot drop a value from an enum type: the INCOMPLETE hop stays, unused.
    with op.batch_alter_table("performed_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_performed_steps_study_uid"))

    op.drop_table("performed_steps")
    op.drop_table("commitment_requests")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TYPE IF EXISTS stepstatus")
