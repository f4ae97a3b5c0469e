"""key images and per-destination result variants

Results gain two kinds: key images (Secondary Capture, "SC") and the Key Object Selection that flags
them ("KO"). On SQLite the kind is text already; PostgreSQL's native enum type gains the values.
Deliveries record which version of a result went (the object, or its stand-in); NULL for rows
written before, which cannot tell.

Revision ID: b0098ced6eed
Revises: 842aa401c2af
Create Date: 2026-12-01 16:13:16.805319
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b0098ced6eed"
down_revision: str | None = "842aa401c2af"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW_RESULT_KINDS = ("SC", "KO")
SENT_VARIANT = sa.Enum("primary", "stand-in", name="sentvariant")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # PostgreSQL >= 12 adds enum values inside a transaction; they are usable once it commits.
        for kind in NEW_RESULT_KINDS:
            op.execute(f"ALTER TYPE resultkind ADD VALUE IF NOT EXISTS '{kind}'")
    SENT_VARIANT.create(op.get_bind(), checkfirst=True)  # PostgreSQL's native type; nothing on SQLite
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sent_variant", SENT_VARIANT, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("sent_variant")
    SENT_VARIANT.drop(op.get_bind(), checkfirst=True)
    # PostgreSQL cannot drop a value from an enum type; the unused result kinds stay, harmless.
