"""Instances keep their slice header and Pixel Data offset, for workers that read slices in place

Revision ID: a3f8c61d2e07
Revises: 5c2e9a7d41b3
Create Date: 2026-12-01 22:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a3f8c61d2e07"
down_revision: str | None = "5c2e9a7d41b3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as table:
        table.add_column(sa.Column("slice_header", sa.LargeBinary(), nullable=True))
        table.add_column(sa.Column("pixel_data_at", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instances") as table:
        table.drop_column("pixel_data_at")
        table.drop_column("slice_header")
