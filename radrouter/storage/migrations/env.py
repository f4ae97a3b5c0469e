"""Alembic's entry point: migrate the connection radrouter hands over, or the URL in the config."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.pool import NullPool

from radrouter.storage import (
    accounts,  # noqa: F401  (its tables are part of the schema)
    arrivals,  # noqa: F401  (its tables are in Base.metadata)
)
from radrouter.storage.commitments import CommitmentRequest  # noqa: F401  (its table is in Base.metadata)
from radrouter.storage.index import Base
from radrouter.storage.steps import PerformedStep  # noqa: F401  (its table is in Base.metadata)
from radrouter.storage.workitems import Workitem  # noqa: F401  (its tables are in Base.metadata)

# Any fixed number: two `radrouter db upgrade` started together on PostgreSQL run one after the other.
_MIGRATION_LOCK = 0x7261_6472


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=True,  # SQLite has no ALTER COLUMN; batch mode works on PostgreSQL too
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        context.run_migrations()


def _main() -> None:
    if context.is_offline_mode():
        raise SystemExit("radrouter migrates online only: give it a database URL")
    handed_over = context.config.attributes.get("connection")
    if handed_over is not None:
        _run(handed_over)
        return
    engine = create_engine(context.config.get_main_option("sqlalchemy.url", ""), poolclass=NullPool)
    with engine.connect() as connection:
        _run(connection)
        connection.commit()


_main()
