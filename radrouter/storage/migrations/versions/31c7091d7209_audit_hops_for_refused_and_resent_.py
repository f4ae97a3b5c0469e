"""audit hops for refused and resent instances

Revision ID: 31c7091d7209
Revises: 842aa401c2af
Create Date: 2026-12-01 16:12:19.781237
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "31c7091d7209"
down_revision: str | None = "842aa401c2af"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


#: Audit hops added by this revision: PostgreSQL's native enum type needs them added.
NEW_HOPS = ("STORE_REFUSED", "RESENT")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for hop in NEW_HOPS:
            op.execute(f"ALTER TYPE hop ADD VALUE IF NOT EXISTS '{hop}'")


def downgrade() -> None:
    """PostgreSQL cannot drop a value from an enum type; rows that use them would need deleting first."""
