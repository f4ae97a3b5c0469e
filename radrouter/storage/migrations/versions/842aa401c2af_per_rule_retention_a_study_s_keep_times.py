"""per-rule retention: a study's keep times

Revision ID: 842aa401c2af
Revises: f657709cca58
Create Date: 2026-12-01 14:07:55.395453
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "842aa401c2af"
down_revision: str | None = "f657709cca58"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Studies already in the index were routed by rules without `retention:`: NULL, the global keep.
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.add_column(sa.Column("keep_images_h", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("keep_results_h", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("studies", schema=None) as batch_op:
        batch_op.drop_column("keep_results_h")
        batch_op.drop_column("keep_images_h")
