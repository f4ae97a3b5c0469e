"""users, service tokens, access audit, feedback author

Revision ID: dd1f6aac3c7a
Revises: 31c7091d7209
Create Date: 2026-12-01 16:11:33.214383
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "dd1f6aac3c7a"
down_revision: str | None = "31c7091d7209"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES = ("viewer", "radiologist", "admin")


def _role() -> sa.types.TypeEngine[str]:
    """Two tables share PostgreSQL's ``role`` type: it is created once, before both."""
    return sa.Enum(*ROLES, name="role").with_variant(
        postgresql.ENUM(*ROLES, name="role", create_type=False), "postgresql"
    )


def upgrade() -> None:
    sa.Enum(*ROLES, name="role").create(op.get_bind(), checkfirst=True)  # nothing on SQLite
    op.create_table(
        "access_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "signed_in", "sign_in_failed", "locked", "signed_out", "session_expired", name="accesskind"
            ),
            nullable=False,
        ),
        sa.Column("user", sa.String(length=100), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("access_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_events_at"), ["at"], unique=False)
        batch_op.create_index(batch_op.f("ix_access_events_user"), ["user"], unique=False)

    op.create_table(
        "service_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", _role(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "users",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", _role(), nullable=False),
        sa.Column("source", sa.Enum("local", "oidc", name="accountsource"), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=True),
        sa.Column("password_changed_at", sa.DateTime(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.add_column(sa.Column("author", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_column("author")

    op.drop_table("users")
    op.drop_table("service_tokens")
    with op.batch_alter_table("access_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_events_user"))
        batch_op.drop_index(batch_op.f("ix_access_events_at"))

    op.drop_table("access_events")
    for enum_type in ("role", "accountsource", "accesskind"):
        sa.Enum(name=enum_type).drop(op.get_bind(), checkfirst=True)
