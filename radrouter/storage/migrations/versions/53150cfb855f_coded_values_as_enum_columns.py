"""coded values as enum columns

Priorities, result kinds, verdicts, HL7 message kinds and pseudonym kinds were free text; they become
enum columns holding the same text (the enums' values), so existing rows need no rewriting.

Revision ID: 53150cfb855f
Revises: c0a3f84fc7b6
Create Date: 2026-12-01 10:02:41.994635
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "53150cfb855f"
down_revision: str | None = "c0a3f84fc7b6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PRIORITY = sa.Enum("stat", "urgent", "routine", name="priority")
VERDICT = sa.Enum("agree", "disagree", name="verdict")
MESSAGE_KIND = sa.Enum("ORU^R01", "OMI^O23", name="messagekind")
PSEUDONYM_KIND = sa.Enum("patient", "study", "uid", name="pseudonymkind")
RESULT_KIND = sa.Enum("SEG", "SR", name="resultkind")

#: (table, column, enum type, nullable)
CODED_COLUMNS = (
    ("feedback", "verdict", VERDICT, False),
    ("hl7_messages", "kind", MESSAGE_KIND, False),
    ("jobs", "priority", PRIORITY, False),
    ("priority_changes", "old_priority", PRIORITY, True),
    ("priority_changes", "new_priority", PRIORITY, False),
    ("pseudonyms", "kind", PSEUDONYM_KIND, False),
    ("results", "kind", RESULT_KIND, False),
    ("worklist_items", "priority", PRIORITY, False),
    ("worklist_items", "base_priority", PRIORITY, False),
    ("worklist_items", "verdict", VERDICT, True),
)


def upgrade() -> None:
    bind = op.get_bind()
    for coded in (PRIORITY, VERDICT, MESSAGE_KIND, PSEUDONYM_KIND, RESULT_KIND):
        coded.create(bind, checkfirst=True)  # PostgreSQL's native types; nothing on SQLite
    for table, column, coded, nullable in CODED_COLUMNS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                column,
                existing_type=sa.VARCHAR(length=16),
                type_=coded,
                existing_nullable=nullable,
                postgresql_using=f"{column}::{coded.name}",
            )


def downgrade() -> None:
    for table, column, coded, nullable in reversed(CODED_COLUMNS):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                column,
                existing_type=coded,
                type_=sa.VARCHAR(length=16),
                existing_nullable=nullable,
                postgresql_using=f"{column}::text",
            )
    bind = op.get_bind()
    for coded in (PRIORITY, VERDICT, MESSAGE_KIND, PSEUDONYM_KIND, RESULT_KIND):
        coded.drop(bind, checkfirst=True)
