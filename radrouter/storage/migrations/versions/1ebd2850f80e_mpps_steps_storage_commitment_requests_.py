"""MPPS steps, storage commitment requests and UPS workitems

Revision ID: 1ebd2850f80e
Revises: b47914779aa8
Create Date: 2026-12-01 16:57:33.989891
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "1ebd2850f80e"
down_revision: str | None = "b47914779aa8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


#: Audit hops added by this revision: PostgreSQL's native enum type needs them added.
NEW_HOPS = ("INCOMPLETE",)
#: Native enum types this revision's tables create on PostgreSQL (dropped by its downgrade).
NEW_TYPES = ("stepstatus", "upspriority", "upsstate")


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

    op.create_table(
        "ups_subscriptions",
        sa.Column("ae_title", sa.String(length=16), nullable=False),
        sa.Column("workitem_uid", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("ae_title", "workitem_uid"),
    )
    op.create_table(
        "workitem_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workitem_uid", sa.String(length=64), nullable=False),
        sa.Column("event_type", sa.Integer(), nullable=False),
        sa.Column(
            "state",
            sa.Enum("SCHEDULED", "IN PROGRESS", "COMPLETED", "CANCELED", name="upsstate"),
            nullable=False,
        ),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("workitem_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_workitem_events_workitem_uid"), ["workitem_uid"], unique=False)

    op.create_table(
        "workitems",
        sa.Column("uid", sa.String(length=64), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("input_series", sa.JSON(), nullable=False),
        sa.Column("pipeline", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.Enum("HIGH", "MEDIUM", "LOW", name="upspriority"), nullable=False),
        sa.Column(
            "state",
            # The type exists by now (made with the table before): PostgreSQL must not create it twice.
            postgresql.ENUM(
                "SCHEDULED", "IN PROGRESS", "COMPLETED", "CANCELED", name="upsstate", create_type=False
            ),
            nullable=False,
        ),
        sa.Column("transaction_uid", sa.String(length=64), nullable=True),
        sa.Column("performer", sa.String(length=200), nullable=True),
        sa.Column("outside", sa.Boolean(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
        ),
        sa.PrimaryKeyConstraint("uid"),
        sa.UniqueConstraint("job_id"),
    )
    with op.batch_alter_table("workitems", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_workitems_study_uid"), ["study_uid"], unique=False)


def downgrade() -> None:
    # PostgreSQL cannot drop a value from an enum type: the INCOMPLETE hop stays, unused.
    with op.batch_alter_table("workitems", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workitems_study_uid"))

    op.drop_table("workitems")
    with op.batch_alter_table("workitem_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_workitem_events_workitem_uid"))

    op.drop_table("workitem_events")
    op.drop_table("ups_subscriptions")
    with op.batch_alter_table("performed_steps", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_performed_steps_study_uid"))

    op.drop_table("performed_steps")
    op.drop_table("commitment_requests")
    if op.get_bind().dialect.name == "postgresql":
        for name in NEW_TYPES:
            op.execute(f"DROP TYPE IF EXISTS {name}")
