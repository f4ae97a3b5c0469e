"""cluster completion ledger, node heartbeats and leases

Revision ID: b47914779aa8
Revises: b0098ced6eed
Create Date: 2026-12-01 16:11:47.179968
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b47914779aa8"
down_revision: str | None = "b0098ced6eed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # New tables only: a single node (cluster.enabled false) never writes them.
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "ledger_arrivals",
        sa.Column("study_uid", sa.String(length=64), nullable=False),
        sa.Column("series_uid", sa.String(length=64), nullable=False),
        sa.Column("incarnation", sa.String(length=32), nullable=False),
        sa.Column("association", sa.String(length=64), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("study_uid", "series_uid", "incarnation", "association"),
    )
    with op.batch_alter_table("ledger_arrivals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ledger_arrivals_last_seen"), ["last_seen"], unique=False)

    op.create_table(
        "ledger_associations",
        sa.Column("incarnation", sa.String(length=32), nullable=False),
        sa.Column("association", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("incarnation", "association"),
    )
    op.create_table(
        "scp_nodes",
        sa.Column("incarnation", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("incarnation"),
    )
    with op.batch_alter_table("scp_nodes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_scp_nodes_name"), ["name"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("scp_nodes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_scp_nodes_name"))

    op.drop_table("scp_nodes")
    op.drop_table("ledger_associations")
    with op.batch_alter_table("ledger_arrivals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_arrivals_last_seen"))

    op.drop_table("ledger_arrivals")
    op.drop_table("leases")
