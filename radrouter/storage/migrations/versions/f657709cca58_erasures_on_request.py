"""erasures on request: their audit rows, and the studies an erasure is removing

Revision ID: f657709cca58
Revises: 04746a384717
Create Date: 2026-12-01 13:48:56.503651
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f657709cca58"
down_revision: str | None = "04746a384717"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "erasures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.Enum("patient", "study", name="erasurescope"), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("studies", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("instances", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("bytes", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("results", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("pseudonyms", sa.Integer(), nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id"),
    )
    # Studies already in the index: none is being erased (NULL).
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("erasure_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_studies_erasure_id"), ["erasure_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_studies_erasure_id"))
        batch_op.drop_column("erasure_id")
    op.drop_table("erasures")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TYPE IF EXISTS erasurescope")
